package auth

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-jose/go-jose/v4"
)

// The signing algorithms Herald accepts, each tied to one kind of key:
// a token whose alg does not match a trusted key of that kind is refused,
// and so is alg "none".
const (
	AlgEdDSA = "EdDSA" // Ed25519
	AlgRS256 = "RS256" // RSA, at least 2048 bits
	AlgES256 = "ES256" // ECDSA on P-256
)

// Key is one trusted public key.
type Key struct {
	// ID is the key's kid, from a JWKS; empty for a PEM key. A token with
	// a kid is checked only against keys with that ID, or without one.
	ID     string
	Alg    string
	Public crypto.PublicKey
}

// keyAlg returns the algorithm a public key verifies, or an error for a
// kind of key Herald does not accept.
func keyAlg(pub crypto.PublicKey) (string, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		return AlgEdDSA, nil
	case *rsa.PublicKey:
		if k.N.BitLen() < 2048 {
			return "", fmt.Errorf("RSA key of %d bits: want at least 2048", k.N.BitLen())
		}
		return AlgRS256, nil
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return "", fmt.Errorf("ECDSA key on %s: want P-256 (ES256)", k.Curve.Params().Name)
		}
		return AlgES256, nil
	}
	return "", fmt.Errorf("unsupported key type %T: want Ed25519, RSA or ECDSA P-256", pub)
}

// LoadKeys reads the trusted public keys in path: a JWKS document (JSON),
// or PEM blocks of public keys, certificates or private keys (whose public
// halves are trusted). Every key must be of a kind Herald accepts.
func LoadKeys(path string) ([]Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := ParseKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}

// ParseKeys parses the contents of a key file, as LoadKeys does.
func ParseKeys(b []byte) ([]Key, error) {
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		return parseJWKS(t)
	}
	var keys []Key
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		pub, err := pemPublicKey(blk)
		if err != nil {
			return nil, err
		}
		alg, err := keyAlg(pub)
		if err != nil {
			return nil, err
		}
		keys = append(keys, Key{Alg: alg, Public: pub})
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys: want a JWKS document or PEM public keys")
	}
	return keys, nil
}

func pemPublicKey(blk *pem.Block) (crypto.PublicKey, error) {
	switch blk.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(blk.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(blk.Bytes)
	case "CERTIFICATE":
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		return c.PublicKey, nil
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, fmt.Errorf("private key of type %T", k)
		}
		return s.Public(), nil
	}
	return nil, fmt.Errorf("PEM block %q: want PUBLIC KEY, RSA PUBLIC KEY, CERTIFICATE or PRIVATE KEY", blk.Type)
}

func parseJWKS(b []byte) ([]Key, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	var keys []Key
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub := k.Public().Key
		if pub == nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): not a public key", i, k.KeyID)
		}
		alg, err := keyAlg(pub)
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, k.KeyID, err)
		}
		if k.Algorithm != "" && k.Algorithm != alg {
			return nil, fmt.Errorf("JWKS key %d (kid %q): alg %q: Herald verifies this key with %s only", i, k.KeyID, k.Algorithm, alg)
		}
		keys = append(keys, Key{ID: k.KeyID, Alg: alg, Public: pub})
	}
	if len(keys) == 0 {
		return nil, errors.New("JWKS has no signing keys")
	}
	return keys, nil
}

// Files in the all-in-one's data dir.
const (
	// DevKeyFile holds the development signing key of the all-in-one:
	// it trusts tokens signed with it, and `feedctl token` signs with it.
	DevKeyFile = "auth-dev-key.pem"
	// ServiceKeyFile holds the key that signs calls between services.
	ServiceKeyFile = "auth-service-key.pem"
)

// LoadOrCreateKey returns the Ed25519 private key in path, creating it,
// with file mode 0600, if the file does not exist.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	k, err := LoadPrivateKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	// The key is written whole to a temporary file (CreateTemp makes it
	// 0600) and linked into place, which fails if path exists: a process
	// racing to create it never reads a file still being written.
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write %s: %w", f.Name(), err)
	}
	err = os.Link(f.Name(), path)
	if errors.Is(err, fs.ErrExist) {
		return LoadPrivateKey(path) // another process created it first
	}
	if err != nil {
		return nil, err
	}
	return priv, nil
}

// LoadPrivateKey reads an Ed25519 private key (PKCS #8 PEM). A file that
// other users may read is refused: whoever reads it can act as anyone.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %v lets other users read the signing key; chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: want a PEM PRIVATE KEY block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: key of type %T: want Ed25519", path, k)
	}
	return priv, nil
}

// PublicKeyPEM encodes the public half of priv as a PEM PUBLIC KEY, the
// form -auth-keys reads.
func PublicKeyPEM(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// DevSigner returns a Signer of users' tokens with the development key in
// the all-in-one's data dir, for feedctl, tests and load generators.
func DevSigner(dataDir string) (*Signer, error) {
	path := filepath.Join(dataDir, DevKeyFile)
	k, err := LoadPrivateKey(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no development key at %s (the all-in-one, herald or make run, creates it at first start; or pass a token): %w", path, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	return NewSigner(k), nil
}
