package auth_test

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/herald-feed/herald/services/platform/auth"
)

// publicKey is the Equal method every standard public key type has.
type publicKey interface{ Equal(crypto.PublicKey) bool }

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func pkixPEM(t testing.TB, pub crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatalf("MarshalPKIXPublicKey(%T): %v", pub, err)
	}
	return pemBlock("PUBLIC KEY", der)
}

func pkcs8(t testing.TB, priv any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatalf("MarshalPKCS8PrivateKey(%T): %v", priv, err)
	}
	return pemBlock("PRIVATE KEY", der)
}

func selfSigned(t testing.TB, priv *ecdsa.PrivateKey) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer.example"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatalf("CreateCertificate: %v", err)
	}
	return pemBlock("CERTIFICATE", der)
}

func TestParseKeys(t *testing.T) {
	ed, rk, ek := newEd25519(t), rsaKey(), ecKey()
	type want struct {
		id, alg string
		pub     crypto.PublicKey
	}
	for _, tt := range []struct {
		name string
		file []byte
		want []want
	}{
		{"Ed25519 PUBLIC KEY", pkixPEM(t, ed.Public()), []want{{"", auth.AlgEdDSA, ed.Public()}}},
		{"RSA PUBLIC KEY (PKIX)", pkixPEM(t, &rk.PublicKey), []want{{"", auth.AlgRS256, &rk.PublicKey}}},
		{"ECDSA PUBLIC KEY", pkixPEM(t, &ek.PublicKey), []want{{"", auth.AlgES256, &ek.PublicKey}}},
		{"RSA PUBLIC KEY (PKCS1)", pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&rk.PublicKey)), []want{{"", auth.AlgRS256, &rk.PublicKey}}},
		{"CERTIFICATE", selfSigned(t, ek), []want{{"", auth.AlgES256, &ek.PublicKey}}},
		{"Ed25519 PRIVATE KEY", pkcs8(t, ed), []want{{"", auth.AlgEdDSA, ed.Public()}}},
		{"RSA PRIVATE KEY (PKCS8)", pkcs8(t, rk), []want{{"", auth.AlgRS256, &rk.PublicKey}}},
		{"ECDSA PRIVATE KEY (PKCS8)", pkcs8(t, ek), []want{{"", auth.AlgES256, &ek.PublicKey}}},
		{
			"several blocks, with text around them",
			bytes.Join([][]byte{[]byte("# the issuer's keys\n"), pkixPEM(t, ed.Public()), []byte("rotated in:\n"), pkixPEM(t, &rk.PublicKey), selfSigned(t, ek)}, nil),
			[]want{{"", auth.AlgEdDSA, ed.Public()}, {"", auth.AlgRS256, &rk.PublicKey}, {"", auth.AlgES256, &ek.PublicKey}},
		},
		{
			"JWKS",
			jwks(t,
				jose.JSONWebKey{Key: ed.Public(), KeyID: "ed", Algorithm: auth.AlgEdDSA, Use: "sig"},
				jose.JSONWebKey{Key: &rk.PublicKey, KeyID: "rsa", Algorithm: auth.AlgRS256},
				jose.JSONWebKey{Key: &ek.PublicKey, KeyID: "ec"},
				// An encryption key is not for tokens, and is skipped.
				jose.JSONWebKey{Key: &newRSA1024(t).PublicKey, KeyID: "enc", Use: "enc"},
			),
			[]want{{"ed", auth.AlgEdDSA, ed.Public()}, {"rsa", auth.AlgRS256, &rk.PublicKey}, {"ec", auth.AlgES256, &ek.PublicKey}},
		},
		{
			"JWKS with whitespace before it",
			append([]byte("\n  "), jwks(t, jose.JSONWebKey{Key: ed.Public(), KeyID: "ed"})...),
			[]want{{"ed", auth.AlgEdDSA, ed.Public()}},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := auth.ParseKeys(tt.file)
			if err != nil {
				t.Fatalf("ParseKeys: %v", err)
			}
			if len(keys) != len(tt.want) {
				t.Fatalf("ParseKeys = %d keys; want %d", len(keys), len(tt.want))
			}
			for i, w := range tt.want {
				k := keys[i]
				if k.ID != w.id || k.Alg != w.alg {
					t.Errorf("key %d = kid %q alg %q; want kid %q alg %q", i, k.ID, k.Alg, w.id, w.alg)
				}
				if pub, ok := w.pub.(publicKey); !ok || !pub.Equal(k.Public) {
					t.Errorf("key %d public key %T differs from the one written", i, k.Public)
				}
			}
		})
	}
}

var rsa1024 = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		panic(err)
	}
	return k
})

func newRSA1024(t testing.TB) *rsa.PrivateKey { t.Helper(); return rsa1024() }

func TestParseKeysRefuses(t *testing.T) {
	ed := newEd25519(t)
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		file []byte
		// reason must appear in the error, which names the problem.
		reason string
	}{
		{"RSA 1024-bit", pkixPEM(t, &newRSA1024(t).PublicKey), "1024 bits"},
		{"RSA 1024-bit PKCS1", pemBlock("RSA PUBLIC KEY", x509.MarshalPKCS1PublicKey(&newRSA1024(t).PublicKey)), "1024 bits"},
		{"ECDSA P-384", pkixPEM(t, &p384.PublicKey), "P-384"},
		{"ECDSA P-384 certificate's key", pkcs8(t, p384), "P-384"},
		{"empty file", nil, "no keys"},
		{"blank file", []byte("\n\t \n"), "no keys"},
		{"garbage", []byte("not a key at all\x00\xff"), "no keys"},
		{"PEM block of another type", pemBlock("EC PRIVATE KEY", []byte("whatever")), `"EC PRIVATE KEY"`},
		{"PUBLIC KEY that does not parse", pemBlock("PUBLIC KEY", []byte("junk")), "asn1"},
		{"good key then a bad one", append(pkixPEM(t, ed.Public()), pkixPEM(t, &p384.PublicKey)...), "P-384"},
		{"JWKS that does not parse", []byte(`{"keys": [`), "JWKS"},
		{"JWKS with no keys", []byte(`{"keys": []}`), "no signing keys"},
		{"JWKS of encryption keys only", jwks(t, jose.JSONWebKey{Key: ed.Public(), KeyID: "e", Use: "enc"}), "no signing keys"},
		{"JWKS alg disagrees with the key", jwks(t, jose.JSONWebKey{Key: ed.Public(), KeyID: "ed", Algorithm: auth.AlgRS256}), `kid "ed"`},
		{"JWKS RS384 on an RSA key", jwks(t, jose.JSONWebKey{Key: &rsaKey().PublicKey, KeyID: "r", Algorithm: "RS384"}), `alg "RS384"`},
		{"JWKS symmetric key", jwks(t, jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "hmac"}), "not a public key"},
		{"JWKS RSA 1024-bit", jwks(t, jose.JSONWebKey{Key: &newRSA1024(t).PublicKey, KeyID: "small"}), "1024 bits"},
		{"JWKS ECDSA P-384", jwks(t, jose.JSONWebKey{Key: &p384.PublicKey, KeyID: "p384"}), "P-384"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			keys, err := auth.ParseKeys(tt.file)
			if err == nil {
				t.Fatalf("ParseKeys = %d keys; want an error saying %q", len(keys), tt.reason)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("ParseKeys error %q does not say %q", err, tt.reason)
			}
		})
	}
}

func TestLoadKeys(t *testing.T) {
	dir := t.TempDir()
	ed := newEd25519(t)
	good := filepath.Join(dir, "keys.pem")
	if err := os.WriteFile(good, pkixPEM(t, ed.Public()), 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := auth.LoadKeys(good)
	if err != nil || len(keys) != 1 || keys[0].Alg != auth.AlgEdDSA {
		t.Errorf("LoadKeys(%s) = %+v, %v; want one EdDSA key", good, keys, err)
	}

	bad := filepath.Join(dir, "bad.pem")
	if err := os.WriteFile(bad, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.LoadKeys(bad); err == nil || !strings.Contains(err.Error(), bad) {
		t.Errorf("LoadKeys(garbage file) = %v; want an error naming %s", err, bad)
	}
	missing := filepath.Join(dir, "missing.pem")
	if _, err := auth.LoadKeys(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("LoadKeys(missing file) = %v; want fs.ErrNotExist naming %s", err, missing)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "data", auth.DevKeyFile)
	k1, err := auth.LoadOrCreateKey(path)
	if err != nil {
		t.Fatalf("LoadOrCreateKey(new file): %v", err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatalf("LoadOrCreateKey made no file: %v", err)
	}
	if perm := st.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %v; want 0600", perm)
	}
	if st, err := os.Stat(filepath.Dir(path)); err != nil || st.Mode().Perm()&0o077 != 0 {
		t.Errorf("key dir = %v, %v; want it made, closed to other users", st, err)
	}
	k2, err := auth.LoadOrCreateKey(path)
	if err != nil {
		t.Fatalf("LoadOrCreateKey(existing file): %v", err)
	}
	if !k1.Equal(k2) {
		t.Error("second LoadOrCreateKey returned another key; want the one in the file")
	}
	k3, err := auth.LoadPrivateKey(path)
	if err != nil || !k1.Equal(k3) {
		t.Errorf("LoadPrivateKey(created file) = %v; want the created key", err)
	}
}

// TestLoadOrCreateKeyConcurrently: callers racing to create the same key
// all end with the one key that is in the file.
func TestLoadOrCreateKeyConcurrently(t *testing.T) {
	for range 20 {
		path := filepath.Join(t.TempDir(), auth.DevKeyFile)
		var wg sync.WaitGroup
		keys := make([][]byte, 8)
		errs := make([]error, len(keys))
		for i := range keys {
			wg.Go(func() {
				k, err := auth.LoadOrCreateKey(path)
				keys[i], errs[i] = k, err
			})
		}
		wg.Wait()
		for i := range keys {
			if errs[i] != nil {
				t.Fatalf("LoadOrCreateKey racing with %d others: %v", len(keys)-1, errs[i])
			}
			if !bytes.Equal(keys[i], keys[0]) {
				t.Fatalf("racing LoadOrCreateKey calls returned different keys")
			}
		}
	}
}

func TestLoadPrivateKeyRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	for _, tt := range []struct {
		name   string
		path   string
		reason string
	}{
		{"readable by others", write("open.pem", pkcs8(t, newEd25519(t)), 0o644), "chmod 600"},
		{"readable by the group", write("group.pem", pkcs8(t, newEd25519(t)), 0o640), "chmod 600"},
		{"ECDSA key", write("ec.pem", pkcs8(t, ecKey()), 0o600), "want Ed25519"},
		{"public key", write("pub.pem", pkixPEM(t, newEd25519(t).Public()), 0o600), "PRIVATE KEY"},
		{"garbage", write("junk.pem", []byte("junk"), 0o600), "PRIVATE KEY"},
	} {
		_, err := auth.LoadPrivateKey(tt.path)
		if err == nil || !strings.Contains(err.Error(), tt.reason) || !strings.Contains(err.Error(), tt.path) {
			t.Errorf("LoadPrivateKey(%s) = %v; want an error naming the file and saying %q", tt.name, err, tt.reason)
		}
	}
	// LoadOrCreateKey does not replace a key it refuses.
	open := filepath.Join(dir, "open.pem")
	if _, err := auth.LoadOrCreateKey(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("LoadOrCreateKey(mode 0644 file) = %v; want the chmod 600 error", err)
	}
}

func TestPublicKeyPEMRoundTrips(t *testing.T) {
	k := newEd25519(t)
	b, err := auth.PublicKeyPEM(k)
	if err != nil {
		t.Fatalf("PublicKeyPEM: %v", err)
	}
	keys, err := auth.ParseKeys(b)
	if err != nil || len(keys) != 1 {
		t.Fatalf("ParseKeys(PublicKeyPEM(k)) = %+v, %v; want one key", keys, err)
	}
	if keys[0].Alg != auth.AlgEdDSA || !k.Public().(publicKey).Equal(keys[0].Public) {
		t.Errorf("ParseKeys(PublicKeyPEM(k)) = %+v; want k's public key, EdDSA", keys[0])
	}
	s := auth.NewSigner(k, auth.WithClock(clockAt(now)))
	v := newVerifier(t, auth.VerifierConfig{Keys: keys})
	if id, err := v.Verify(mustToken(t, s, "alice", time.Hour)); err != nil || id.User != "alice" {
		t.Errorf("Verify with the key from PublicKeyPEM = %+v, %v; want alice", id, err)
	}
}

func TestDevSigner(t *testing.T) {
	dir := t.TempDir()
	_, err := auth.DevSigner(dir)
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(dir, auth.DevKeyFile)) {
		t.Errorf("DevSigner(dir without a key) = %v; want fs.ErrNotExist naming the key's path", err)
	}

	k, err := auth.LoadOrCreateKey(filepath.Join(dir, auth.DevKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	s, err := auth.DevSigner(dir)
	if err != nil {
		t.Fatalf("DevSigner(dir with a key): %v", err)
	}
	v := newVerifier(t, auth.VerifierConfig{Keys: []auth.Key{auth.NewSigner(k).Key()}, Now: time.Now})
	if id, err := v.Verify(mustToken(t, s, "alice", time.Hour)); err != nil || id.User != "alice" {
		t.Errorf("Verify(DevSigner's token) = %+v, %v; want alice", id, err)
	}
}
