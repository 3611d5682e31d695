package deploytest

import (
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// scaledObject is the part of KEDA's ScaledObject (keda.sh/v1alpha1) the
// overlays use, decoded as strictly as the k8s.io/api types: a field KEDA
// does not have fails here. (KEDA's own Go types would pull in its whole
// controller.)
type scaledObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Spec struct {
		ScaleTargetRef struct {
			Name string `json:"name"`
		} `json:"scaleTargetRef"`
		MinReplicaCount *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount *int32 `json:"maxReplicaCount,omitempty"`
		Triggers        []struct {
			Type              string            `json:"type"`
			MetricType        string            `json:"metricType,omitempty"`
			Metadata          map[string]string `json:"metadata"`
			AuthenticationRef *struct {
				Name string `json:"name"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

// triggerAuthentication is KEDA's TriggerAuthentication, the part used.
type triggerAuthentication struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels,omitempty"`
	} `json:"metadata"`
	Spec struct {
		SecretTargetRef []struct {
			Parameter string `json:"parameter"`
			Name      string `json:"name"`
			Key       string `json:"key"`
		} `json:"secretTargetRef"`
	} `json:"spec"`
}

// rendered is one overlay's objects, decoded.
type rendered struct {
	deployments map[string]*appsv1.Deployment
	services    []*corev1.Service
	configMaps  map[string]*corev1.ConfigMap
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
	scaled      []*scaledObject
	triggerAuth map[string]bool
}

// render builds dir with kustomize, as `kubectl kustomize` does, and
// decodes every object strictly into its type.
func render(t *testing.T, dir string) rendered {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	r := rendered{deployments: map[string]*appsv1.Deployment{}, configMaps: map[string]*corev1.ConfigMap{}, triggerAuth: map[string]bool{}}
	for _, res := range rm.Resources() {
		raw, err := res.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		kind, name := res.GetKind(), res.GetName()
		switch kind {
		case "Deployment":
			r.deployments[name] = decodeStrict[appsv1.Deployment](t, kind, name, raw)
		case "Service":
			r.services = append(r.services, decodeStrict[corev1.Service](t, kind, name, raw))
		case "ConfigMap":
			r.configMaps[name] = decodeStrict[corev1.ConfigMap](t, kind, name, raw)
		case "PodDisruptionBudget":
			r.pdbs = append(r.pdbs, decodeStrict[policyv1.PodDisruptionBudget](t, kind, name, raw))
		case "HorizontalPodAutoscaler":
			r.hpas = append(r.hpas, decodeStrict[autoscalingv2.HorizontalPodAutoscaler](t, kind, name, raw))
		case "ScaledObject":
			r.scaled = append(r.scaled, decodeStrict[scaledObject](t, kind, name, raw))
		case "TriggerAuthentication":
			decodeStrict[triggerAuthentication](t, kind, name, raw)
			r.triggerAuth[name] = true
		default:
			t.Errorf("%s %s: a kind this test does not check", kind, name)
		}
	}
	return r
}

// TestKustomizeOverlays renders every overlay under deploy/k8s/overlays
// with kustomize, decodes each object strictly into the Kubernetes API's
// own Go types (a misspelt or misplaced field fails), and checks each
// Deployment against the binary it runs: every HERALD_* variable it is
// given, directly or from a ConfigMap, is one that binary reads; its gRPC
// probes and ports are the address the binary listens on; its metrics
// port the one it serves metrics on; it has resource requests and a
// memory limit; and every Service, PodDisruptionBudget and autoscaler
// points at pods that exist.
func TestKustomizeOverlays(t *testing.T) {
	vars := acceptedVars(t)
	overlays, err := filepath.Glob(filepath.Join(repoRoot, "deploy", "k8s", "overlays", "*"))
	if err != nil || len(overlays) < 2 {
		t.Fatalf("overlays under deploy/k8s/overlays: %v, %v; want at least two (small and ha)", overlays, err)
	}
	for _, dir := range overlays {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			r := render(t, dir)
			if len(r.deployments) != 4 {
				t.Errorf("%d Deployments; want 4, one per service", len(r.deployments))
			}
			for name, d := range r.deployments {
				checkDeployment(t, name, d, r.configMaps, vars)
			}
			labelsOf := map[string]map[string]string{}
			for name, d := range r.deployments {
				labelsOf[name] = d.Spec.Template.Labels
			}
			selects := func(sel map[string]string) bool {
				for _, l := range labelsOf {
					if len(sel) > 0 && matches(sel, l) {
						return true
					}
				}
				return false
			}
			for _, s := range r.services {
				if !selects(s.Spec.Selector) {
					t.Errorf("Service %s selects %v, which no Deployment's pods carry", s.Name, s.Spec.Selector)
				}
			}
			for _, p := range r.pdbs {
				if p.Spec.Selector == nil || !selects(p.Spec.Selector.MatchLabels) {
					t.Errorf("PodDisruptionBudget %s selects no Deployment's pods", p.Name)
				}
			}
			for _, h := range r.hpas {
				if r.deployments[h.Spec.ScaleTargetRef.Name] == nil {
					t.Errorf("HorizontalPodAutoscaler %s scales %s, which is not a Deployment here", h.Name, h.Spec.ScaleTargetRef.Name)
				}
			}
			for _, s := range r.scaled {
				if r.deployments[s.Spec.ScaleTargetRef.Name] == nil {
					t.Errorf("ScaledObject %s scales %s, which is not a Deployment here", s.Metadata.Name, s.Spec.ScaleTargetRef.Name)
				}
				for _, tr := range s.Spec.Triggers {
					if tr.AuthenticationRef != nil && !r.triggerAuth[tr.AuthenticationRef.Name] {
						t.Errorf("ScaledObject %s: trigger %s names TriggerAuthentication %s, which is not here", s.Metadata.Name, tr.Type, tr.AuthenticationRef.Name)
					}
				}
			}
			t.Logf("%d Deployments, %d Services, %d ConfigMaps, %d PodDisruptionBudgets, %d HorizontalPodAutoscalers, %d ScaledObjects", len(r.deployments), len(r.services), len(r.configMaps), len(r.pdbs), len(r.hpas), len(r.scaled))
			if autoscalers := len(r.hpas) + len(r.scaled); autoscalers != 1 {
				t.Errorf("%d autoscalers of the fan-out (HorizontalPodAutoscaler or ScaledObject); want exactly one: two on one Deployment fight", autoscalers)
			}
		})
	}
}

// decodeStrict decodes raw, the object kind/name, into a new T, and fails t on a field T
// does not have.
func decodeStrict[T any](t *testing.T, kind, name string, raw []byte) *T {
	t.Helper()
	v := new(T)
	if err := yaml.UnmarshalStrict(raw, v); err != nil {
		t.Errorf("%s %s: %v", kind, name, err)
	}
	return v
}

func matches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// checkDeployment checks one Deployment's container against its binary.
func checkDeployment(t *testing.T, name string, d *appsv1.Deployment, configMaps map[string]*corev1.ConfigMap, vars map[string][]string) {
	t.Helper()
	if d.Spec.Selector == nil || !matches(d.Spec.Selector.MatchLabels, d.Spec.Template.Labels) {
		t.Errorf("Deployment %s: its selector does not match its pods' labels", name)
	}
	cs := d.Spec.Template.Spec.Containers
	if len(cs) != 1 {
		t.Fatalf("Deployment %s has %d containers; want 1", name, len(cs))
	}
	c := cs[0]
	if len(c.Command) == 0 {
		t.Fatalf("Deployment %s: no command, so the image's default (the all-in-one) would run", name)
	}
	bin := filepath.Base(c.Command[0])
	accepted, ok := vars[bin]
	if !ok || bin == "herald" || bin == "feedctl" {
		t.Fatalf("Deployment %s runs %s; want one of the split services", name, bin)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Errorf("Deployment %s: envFrom other than a ConfigMap", name)
			continue
		}
		cm := configMaps[from.ConfigMapRef.Name]
		if cm == nil {
			t.Errorf("Deployment %s: envFrom ConfigMap %s, which is not here", name, from.ConfigMapRef.Name)
			continue
		}
		for k, v := range cm.Data {
			env[k] = v
		}
	}
	for v := range env {
		if v != "POD_IP" && !slices.Contains(accepted, v) {
			t.Errorf("Deployment %s is given %s, which %s does not read", name, v, bin)
		}
	}
	port := func(addrVar string) int32 {
		_, p, err := net.SplitHostPort(env[addrVar])
		n, err2 := strconv.Atoi(p)
		if err != nil || err2 != nil {
			t.Errorf("Deployment %s: %s = %q; want host:port", name, addrVar, env[addrVar])
		}
		return int32(n)
	}
	grpcPort, metricsPort := port("HERALD_ADDR"), port("HERALD_METRICS_ADDR")
	if env["HERALD_ADVERTISE"] != fmt.Sprintf("$(POD_IP):%d", grpcPort) {
		t.Errorf("Deployment %s: HERALD_ADVERTISE = %q; want $(POD_IP):%d, the pod's own address", name, env["HERALD_ADVERTISE"], grpcPort)
	}
	named := map[string]int32{}
	for _, p := range c.Ports {
		named[p.Name] = p.ContainerPort
	}
	if named["grpc"] != grpcPort || named["metrics"] != metricsPort {
		t.Errorf("Deployment %s: container ports %v; want grpc %d and metrics %d, where %s listens", name, named, grpcPort, metricsPort, bin)
	}
	// The HTTP API, where a Deployment serves it, on the port it names.
	if _, ok := env["HERALD_HTTP_ADDR"]; ok || named["http"] != 0 {
		if httpPort := port("HERALD_HTTP_ADDR"); named["http"] != httpPort {
			t.Errorf("Deployment %s: container ports %v; want http %d, where HERALD_HTTP_ADDR listens", name, named, httpPort)
		}
	}
	for what, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
		if p == nil || p.GRPC == nil || p.GRPC.Port != grpcPort {
			t.Errorf("Deployment %s: the %s probe is not gRPC health on port %d", name, what, grpcPort)
		}
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("Deployment %s: resources %v; want CPU and memory requests and a memory limit", name, c.Resources)
	}
	// Every file a variable names is in a mounted secret.
	for v, val := range env {
		if !filepath.IsAbs(val) || filepath.Ext(v) != "" {
			continue
		}
		if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return filepath.Dir(val) == m.MountPath }) {
			t.Errorf("Deployment %s: %s = %s, which no volume mount holds", name, v, val)
		}
	}
}
