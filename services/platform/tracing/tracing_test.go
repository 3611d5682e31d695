package tracing

import (
	"strings"
	"testing"
)

func TestSetting(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		want    string // the variable that turned tracing on; "" for off
		wantErr string
	}{
		{env: nil, want: ""},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, want: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, want: "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, want: "OTEL_TRACES_EXPORTER"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, want: ""},
		{env: map[string]string{"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, want: ""},
		{env: map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, want: ""},
		{env: map[string]string{"OTEL_SDK_DISABLED": "false", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, want: "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "console"}, wantErr: `OTEL_TRACES_EXPORTER="console"`},
		{env: map[string]string{"OTEL_TRACES_EXPORTER": "zipkin", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317"}, wantErr: "want otlp or none"},
	} {
		got, err := Setting(func(k string) string { return tc.env[k] })
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Setting(%v) error = %v; want one containing %q", tc.env, err, tc.wantErr)
			}
		case err != nil || got != tc.want:
			t.Errorf("Setting(%v) = %q, %v; want %q, nil", tc.env, got, err, tc.want)
		}
	}
}

func TestProtocol(t *testing.T) {
	for _, tc := range []struct {
		env     map[string]string
		want    string
		wantErr bool
	}{
		{env: nil, want: "http/protobuf"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, want: "grpc"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf"}, want: "http/protobuf"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"}, wantErr: true},
	} {
		got, err := protocol(func(k string) string { return tc.env[k] })
		if (err != nil) != tc.wantErr || got != tc.want && !tc.wantErr {
			t.Errorf("protocol(%v) = %q, %v; want %q (error: %v)", tc.env, got, err, tc.want, tc.wantErr)
		}
	}
}

// TestOffByDefault: with no OTEL_* variable set, Setup turns nothing on
// and its options add nothing to gRPC.
func TestOffByDefault(t *testing.T) {
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_TRACES_EXPORTER", "OTEL_SDK_DISABLED"} {
		t.Setenv(v, "")
	}
	tr, err := Setup(t.Context(), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Not Enabled(): another test of this package installs a provider.
	if tr.tp != nil || len(tr.ServerOptions()) != 0 || len(tr.DialOptions()) != 0 {
		t.Errorf("tracing with no OTEL_* variable: provider %v, %d server and %d dial options; want none", tr.tp, len(tr.ServerOptions()), len(tr.DialOptions()))
	}
	if err := tr.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown of tracing that is off: %v", err)
	}
}
