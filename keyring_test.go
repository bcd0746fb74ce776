package registryauth

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/token"
)

// testClock is a settable clock for keyrings.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// openTestKeyring opens the keyring of policy "p" in storage as a Caddy
// instance with configuration c would, at clock's time.
func openTestKeyring(t *testing.T, storage certmagic.Storage, c SignerConfig, clock *testClock) (*keyring, error) {
	t.Helper()
	if err := c.validate(); err != nil {
		return nil, err
	}
	k := &keyring{name: "p", cfg: c, storage: storage, logger: zap.NewNop(), times: testTimes, clock: clock.Now}
	k.times.sync = c.syncInterval()
	k.plan = rotationPlan{every: time.Duration(c.RotateEvery), stagePeriod: c.stagePeriod()}
	var err error
	if k.files, err = c.readFiles(zap.NewNop(), "p"); err != nil {
		return nil, err
	}
	return k, k.open(context.Background())
}

func mustOpen(t *testing.T, storage certmagic.Storage, c SignerConfig, clock *testClock) *keyring {
	t.Helper()
	k, err := openTestKeyring(t, storage, c, clock)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func (k *keyring) mustStep(t *testing.T, step string, force bool) keyringStatus {
	t.Helper()
	st, err := k.runStep(context.Background(), step, keyRequest{Force: force})
	if err != nil {
		t.Fatalf("%s: %v", step, err)
	}
	return st
}

func (k *keyring) mustSync(t *testing.T) {
	t.Helper()
	if err := k.sync(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// signTest signs an access token, and a refresh token, at the clock's time.
func signTest(t *testing.T, s *token.Signer, now time.Time) (access, refresh string) {
	t.Helper()
	var err error
	if access, err = s.Sign(token.NewClaims("iss", "alice", "svc", 5*time.Minute, now, nil)); err != nil {
		t.Fatal(err)
	}
	c := token.NewClaims("iss", "alice", token.RefreshAudience("svc"), 90*24*time.Hour, now, nil)
	c.Kind, c.Fingerprint = token.KindRefresh, "x"
	if refresh, err = s.Sign(c); err != nil {
		t.Fatal(err)
	}
	return access, refresh
}

func bundleSize(t *testing.T, pemData []byte) int {
	t.Helper()
	certs, err := token.ParseCertificatesPEM(pemData)
	if err != nil {
		t.Fatal(err)
	}
	return len(certs)
}

// TestKeyringFleet: two instances on one storage generate one key between
// them; a key staged and promoted at A is published and used by B after
// its sync; tokens of the old key verify at both throughout, refresh
// tokens after the retirement too, and the refresh secret never changes.
func TestKeyringFleet(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	clock := &testClock{now: time.Now()}
	out := t.TempDir()
	var a, b *keyring
	var wg sync.WaitGroup
	wg.Go(func() {
		a = mustOpen(t, storage, SignerConfig{BundleFile: filepath.Join(out, "a.pem"), Rotation: rotationManual}, clock)
	})
	wg.Go(func() {
		b = mustOpen(t, storage, SignerConfig{BundleFile: filepath.Join(out, "b.pem"), Rotation: rotationManual}, clock)
	})
	wg.Wait()
	if t.Failed() {
		return
	}
	if a.signer.KeyID() != b.signer.KeyID() || !bytes.Equal(a.signer.Secret(), b.signer.Secret()) {
		t.Fatal("the two instances generated two keys")
	}
	for _, k := range []*keyring{a, b} {
		if err := k.start(); err != nil {
			t.Fatal(err)
		}
		defer runningKeyrings.remove(k)
	}
	oldKID, secret := a.signer.KeyID(), a.signer.Secret()
	oldAccess, oldRefresh := signTest(t, a.signer, clock.Now())

	st := a.mustStep(t, stepStage, false)
	if len(st.Keys) != 2 || st.Keys[0].State != keyStaged {
		t.Fatalf("after stage: %+v", st.Keys)
	}
	if n := bundleSize(t, b.signer.CertificatesPEM()); n != 1 {
		t.Fatalf("B publishes %d keys before its sync", n)
	}
	b.mustSync(t)
	data, _ := os.ReadFile(filepath.Join(out, "b.pem"))
	if bundleSize(t, b.signer.CertificatesPEM()) != 2 || bundleSize(t, data) != 2 || b.signer.KeyID() != oldKID {
		t.Fatal("B does not publish the staged key beside the signing one after its sync")
	}

	a.mustStep(t, stepPromote, false)
	newKID := a.signer.KeyID()
	// Before B notices, it still signs with the old key, and both accept
	// each other's tokens: the new key was published when staged.
	newAccess, _ := signTest(t, a.signer, clock.Now())
	if _, err := b.signer.VerifyAccess(newAccess, "iss", []string{"svc"}, clock.Now()); err != nil || b.signer.KeyID() != oldKID {
		t.Fatalf("B before its sync: %v, signs with %s", err, b.signer.KeyID())
	}
	b.mustSync(t)
	if b.signer.KeyID() != newKID || newKID == oldKID {
		t.Fatalf("B signs with %s after its sync, A with %s", b.signer.KeyID(), newKID)
	}
	for name, k := range map[string]*keyring{"A": a, "B": b} {
		if _, err := k.signer.VerifyAccess(oldAccess, "iss", []string{"svc"}, clock.Now()); err != nil {
			t.Errorf("%s refuses an access token of the previous key: %v", name, err)
		}
	}

	retireAcross(t, a, b, clock, oldRefresh, secret, filepath.Join(out, "b.pem"))
}

// retireAcross retires the previous key at a once it may, and checks that
// b follows: the key leaves the bundle, its refresh tokens still verify
// with the same secret until they expire, then it is dropped.
func retireAcross(t *testing.T, a, b *keyring, clock *testClock, oldRefresh string, secret []byte, bundleB string) {
	t.Helper()
	wantConflict(t, func() error { _, err := a.runStep(context.Background(), stepRetire, keyRequest{}); return err }(), "may leave the bundle")
	clock.add(testTimes.access + time.Minute + 10*time.Second)
	a.mustStep(t, stepRetire, false)
	b.mustSync(t)
	data, _ := os.ReadFile(bundleB)
	if bundleSize(t, b.signer.CertificatesPEM()) != 1 || bundleSize(t, data) != 1 {
		t.Fatal("the retired key is still published")
	}
	for name, k := range map[string]*keyring{"A": a, "B": b} {
		if _, err := k.signer.VerifyRefresh(oldRefresh, "iss", "svc", clock.Now()); err != nil {
			t.Errorf("%s refuses a refresh token of the retired key: %v", name, err)
		}
		if !bytes.Equal(k.signer.Secret(), secret) {
			t.Errorf("%s: the refresh secret changed with the rotation", name)
		}
	}
	// Once its last refresh token has expired, the key is dropped.
	clock.add(testTimes.refresh)
	b.mustSync(t)
	a.mustSync(t)
	if _, err := a.signer.VerifyRefresh(oldRefresh, "iss", "svc", clock.Now().Add(-time.Hour)); err == nil {
		t.Fatal("the key is kept after its last refresh token expired")
	}
	if d, _ := a.load(context.Background()); len(d.Keys) != 1 {
		t.Fatalf("stored keys after the drop: %+v", d.Keys)
	}
}

// TestKeyringEmergency: every other key is withdrawn at once, with all
// tokens it signed and the refresh secret.
func TestKeyringEmergency(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	clock := &testClock{now: time.Now()}
	k := mustOpen(t, storage, SignerConfig{}, clock)
	access, refresh := signTest(t, k.signer, clock.Now())
	secret := k.signer.Secret()
	st := k.mustStep(t, stepEmergency, false)
	if len(st.Keys) != 1 || len(st.Withdrawn) != 1 || bytes.Equal(k.signer.Secret(), secret) {
		t.Fatalf("after the emergency: %+v", st)
	}
	if _, err := k.signer.VerifyAccess(access, "iss", []string{"svc"}, clock.Now()); err == nil {
		t.Error("an access token of the withdrawn key verifies")
	}
	if _, err := k.signer.VerifyRefresh(refresh, "iss", "svc", clock.Now()); err == nil {
		t.Error("a refresh token of the withdrawn key verifies")
	}
	if n := bundleSize(t, k.signer.CertificatesPEM()); n != 1 {
		t.Errorf("bundle of %d keys", n)
	}
}

// TestKeyringImportsEarlierKey: a key an earlier version generated (its
// own storage layout) keeps signing, with the refresh secret it implied,
// so refresh tokens issued before the upgrade stay valid.
func TestKeyringImportsEarlierKey(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	ctx := context.Background()
	key, cert, err := token.GenerateKey("ES256", "old", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := token.MarshalPrivateKeyPEM(key)
	_ = storage.Store(ctx, "registry_auth/signers/p/ES256/key.pem", keyPEM)
	_ = storage.Store(ctx, "registry_auth/signers/p/ES256/cert.pem", token.MarshalCertificatesPEM([]*x509.Certificate{cert}))
	old, err := token.NewSigner(key, []*x509.Certificate{cert}, token.SignerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, refresh := signTest(t, old, time.Now())

	k := mustOpen(t, storage, SignerConfig{}, &testClock{now: time.Now()})
	if k.signer.KeyID() != old.KeyID() || !bytes.Equal(k.signer.Secret(), old.Secret()) {
		t.Fatal("the earlier key or its secret did not carry over")
	}
	k.mustStep(t, stepStage, false)
	k.mustStep(t, stepPromote, false)
	if _, err := k.signer.VerifyRefresh(refresh, "iss", "svc", time.Now()); err != nil || !bytes.Equal(k.signer.Secret(), old.Secret()) {
		t.Fatalf("a refresh token from before the upgrade, after a rotation: %v", err)
	}
}

// writeKeyFiles writes a new key and its certificate into dir.
func writeKeyFiles(t *testing.T, dir, name string) (keyFile, certFile string) {
	t.Helper()
	key, cert, err := token.GenerateKey("ES256", name, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := token.MarshalPrivateKeyPEM(key)
	keyFile, certFile = filepath.Join(dir, name+".key"), filepath.Join(dir, name+".crt")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, token.MarshalCertificatesPEM([]*x509.Certificate{cert}), 0o600); err != nil {
		t.Fatal(err)
	}
	return keyFile, certFile
}

// TestKeyringKeyFiles: next_key_file stages, the admin API promotes, the
// configuration then names the new key as key_file; a key_file the
// storage does not know signs at once; instances that disagree are told.
func TestKeyringKeyFiles(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	dir := t.TempDir()
	clock := &testClock{now: time.Now()}
	k1, c1 := writeKeyFiles(t, dir, "one")
	k2, c2 := writeKeyFiles(t, dir, "two")
	k3, c3 := writeKeyFiles(t, dir, "three")
	k4, c4 := writeKeyFiles(t, dir, "four")
	staged := SignerConfig{KeyFile: k1, CertFile: c1, NextKeyFile: k2, NextCertFile: c2}

	b := mustOpen(t, storage, SignerConfig{KeyFile: k1, CertFile: c1}, clock)
	first := b.signer.KeyID()
	wantConflict(t, func() error { _, err := b.runStep(context.Background(), stepStage, keyRequest{}); return err }(), "next_key_file")
	a := mustOpen(t, storage, staged, clock)
	b.mustSync(t)
	if bundleSize(t, b.signer.CertificatesPEM()) != 2 || a.signer.KeyID() != first {
		t.Fatal("next_key_file is not staged")
	}
	// An instance without next_key_file cannot promote it...
	wantConflict(t, func() error { _, err := b.runStep(context.Background(), stepPromote, keyRequest{}); return err }(), "does not have")
	// ...and after A did, B cannot load the keys until it has the file.
	a.mustStep(t, stepPromote, false)
	second := a.signer.KeyID()
	if err := b.sync(context.Background()); err == nil || b.signer.KeyID() != first {
		t.Fatalf("B without the promoted key's file: %v", err)
	}
	if _, err := openTestKeyring(t, storage, SignerConfig{KeyFile: k1, CertFile: c1}, clock); err == nil || !strings.Contains(err.Error(), "neither key_file nor next_key_file") {
		t.Fatalf("reload without the promoted key's file: %v", err)
	}
	// The operator moves the new key to key_file: it keeps signing, the
	// old one stays published until retired.
	a = mustOpen(t, storage, SignerConfig{KeyFile: k2, CertFile: c2}, clock)
	if a.signer.KeyID() != second || bundleSize(t, a.signer.CertificatesPEM()) != 2 {
		t.Fatal("moving next_key_file to key_file changed the keys")
	}
	// A key_file nobody staged signs at once; the one before stays
	// published.
	a = mustOpen(t, storage, SignerConfig{KeyFile: k3, CertFile: c3}, clock)
	if a.signer.KeyID() == second || bundleSize(t, a.signer.CertificatesPEM()) != 3 {
		t.Fatalf("an unstaged key_file: signs %s, %d published", a.signer.KeyID(), bundleSize(t, a.signer.CertificatesPEM()))
	}
	// An emergency needs the new key in next_key_file.
	wantConflict(t, func() error { _, err := a.runStep(context.Background(), stepEmergency, keyRequest{}); return err }(), "next_key_file")
	a = mustOpen(t, storage, SignerConfig{KeyFile: k3, CertFile: c3, NextKeyFile: k4, NextCertFile: c4}, clock)
	if _, err := openTestKeyring(t, storage, SignerConfig{KeyFile: k3, CertFile: c3, NextKeyFile: k1, NextCertFile: c1}, clock); err == nil || !strings.Contains(err.Error(), "signed before") {
		t.Fatalf("a key that signed before as next_key_file: %v", err)
	}
	a = mustOpen(t, storage, SignerConfig{KeyFile: k3, CertFile: c3, NextKeyFile: k4, NextCertFile: c4}, clock)
	a.mustStep(t, stepEmergency, false)
	if a.signer.KeyID() == first || a.signer.KeyID() == second || bundleSize(t, a.signer.CertificatesPEM()) != 1 {
		t.Fatal("the emergency did not leave next_key_file's key alone")
	}
	if _, err := openTestKeyring(t, storage, SignerConfig{KeyFile: k2, CertFile: c2}, clock); err == nil || !strings.Contains(err.Error(), "withdrawn") {
		t.Fatalf("a withdrawn key as key_file: %v", err)
	}
}

// TestKeyringAutomaticRotation: a generated key is staged, promoted and
// retired by the instances' syncs alone, the gauges following.
func TestKeyringAutomaticRotation(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	clock := &testClock{now: time.Now()}
	cfg := SignerConfig{RotateEvery: caddy30d, StagePeriod: caddy7d}
	k := mustOpen(t, storage, cfg, clock)
	staged := func() float64 { return gaugeOf(t, metrics.stagedKeyCreated, "p") }
	if staged() != 0 || gaugeOf(t, metrics.signingCertExpiry, "p") != float64(k.signer.Certificates()[0].NotAfter.Unix()) {
		t.Fatal("gauges after the first load")
	}
	first := k.signer.KeyID()
	clock.add(23 * 24 * time.Hour)
	k.mustSync(t)
	if staged() != float64(clock.Now().Truncate(time.Second).Unix()) || k.signer.KeyID() != first {
		t.Fatalf("not staged 7 days before the rotation: staged gauge %v", staged())
	}
	clock.add(7 * 24 * time.Hour)
	k.mustSync(t)
	if k.signer.KeyID() == first || staged() != 0 || bundleSize(t, k.signer.CertificatesPEM()) != 2 {
		t.Fatal("not promoted 30 days after creation")
	}
	if created := gaugeOf(t, metrics.signingKeyCreated, "p"); created != float64(clock.Now().Add(-7*24*time.Hour).Truncate(time.Second).Unix()) {
		t.Fatalf("signing key created gauge %v", created)
	}
	clock.add(testTimes.access + time.Minute + 10*time.Second)
	k.mustSync(t)
	if bundleSize(t, k.signer.CertificatesPEM()) != 1 {
		t.Fatal("the previous key was not retired once its access tokens expired")
	}
	// A key_id names one key: no automatic rotation, no staging.
	if err := (&SignerConfig{KeyID: "x", Rotation: rotationAuto}).validate(); err == nil {
		t.Fatal("key_id with automatic rotation")
	}
	k = mustOpen(t, &certmagic.FileStorage{Path: t.TempDir()}, SignerConfig{KeyID: "x"}, clock)
	wantConflict(t, func() error { _, err := k.runStep(context.Background(), stepStage, keyRequest{}); return err }(), "key_id")
}

// gaugeOf reads a gauge's value for a policy, as a scrape would.
func gaugeOf(t *testing.T, g *prometheus.GaugeVec, policyName string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	if err := reg.Register(g); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "policy" && l.GetValue() == policyName {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no gauge for policy %q", policyName)
	return 0
}

const (
	caddy7d  = 7 * 24 * 3600 * 1e9
	caddy30d = 30 * 24 * 3600 * 1e9
)

// TestKeyringSyncNeverGenerates: a document gone from storage is an error
// for a running instance, which keeps its keys; only a config load makes
// a new one.
func TestKeyringSyncNeverGenerates(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	k := mustOpen(t, storage, SignerConfig{}, &testClock{now: time.Now()})
	kid := k.signer.KeyID()
	if err := storage.Delete(context.Background(), keyringKey("p")); err != nil {
		t.Fatal(err)
	}
	if err := k.sync(context.Background()); err == nil || k.signer.KeyID() != kid {
		t.Fatalf("sync without a document: %v", err)
	}
	if _, err := k.runStep(context.Background(), stepStage, keyRequest{}); err == nil || !strings.Contains(err.Error(), "missing from storage") {
		t.Fatalf("a step without a document: %v", err)
	}
}

// TestKeyringSyncIgnoresTheForm: a document stored in another form (a
// compact backup restored, a newer version's extra field) is no change:
// the signer keeps its key set, so what remembers verified tokens keeps
// them.
func TestKeyringSyncIgnoresTheForm(t *testing.T) {
	ctx := context.Background()
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	k := mustOpen(t, storage, SignerConfig{}, &testClock{now: time.Now()})
	raw, err := storage.Load(ctx, keyringKey("p"))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	doc["written_by"] = "a newer version"
	compact, _ := json.Marshal(doc)
	if err := storage.Store(ctx, keyringKey("p"), compact); err != nil {
		t.Fatal(err)
	}
	gen := k.signer.Generation()
	for range 3 {
		if err := k.sync(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if k.signer.Generation() != gen {
		t.Fatal("the same keys in another form replaced the signer's key set")
	}
}

// TestSignerConfigRefuses: fields that do not go together.
func TestSignerConfigRefuses(t *testing.T) {
	for _, tc := range []struct {
		c    SignerConfig
		want string
	}{
		{SignerConfig{KeyFile: "k"}, "key_file and cert_file go together"},
		{SignerConfig{KeyFile: "k", CertFile: "c", NextKeyFile: "n"}, "next_key_file and next_cert_file go together"},
		{SignerConfig{NextKeyFile: "n", NextCertFile: "c"}, "only with key_file"},
		{SignerConfig{Rotation: "daily"}, `rotation: "daily"`},
		{SignerConfig{Header: "jku"}, `header: want x5c or kid, got "jku"`},
		{SignerConfig{KeyFile: "k", CertFile: "c", Rotation: rotationAuto}, "rotated by hand"},
		{SignerConfig{KeyFile: "k", CertFile: "c", RotateEvery: caddy30d}, "only for generated keys"},
		{SignerConfig{KeyID: "x", RotateEvery: caddy30d}, "key_id names a single key"},
		{SignerConfig{KeyID: "x", KeyFile: "k", CertFile: "c", NextKeyFile: "n", NextCertFile: "m"}, "key_id names a single key"},
		{SignerConfig{RotateEvery: caddy7d}, "longer than stage_period"},
		{SignerConfig{StagePeriod: -1}, "must be positive"},
		{SignerConfig{SyncInterval: 1e8}, "sync_interval: at least 1s"},
	} {
		if err := tc.c.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}

// TestKeyGaugesFollowTheConfig: a config reload keeps a policy's gauges
// (the new config's keyring takes over before the old one stops); a
// policy gone from the config takes its gauges with it.
func TestKeyGaugesFollowTheConfig(t *testing.T) {
	storage := &certmagic.FileStorage{Path: t.TempDir()}
	clock := &testClock{now: time.Now()}
	run := func(k *keyring) func() {
		if err := k.start(); err != nil {
			t.Fatal(err)
		}
		stop, done := make(chan struct{}), make(chan struct{})
		go func() { k.run(stop); close(done) }()
		return func() { close(stop); <-done }
	}
	stopOld := run(mustOpen(t, storage, SignerConfig{}, clock))
	stopNew := run(mustOpen(t, storage, SignerConfig{}, clock))
	stopOld()
	if gaugeOf(t, metrics.signingKeyCreated, "p") == 0 {
		t.Fatal("the reload removed the gauge")
	}
	stopNew()
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.signingKeyCreated)
	families, _ := reg.Gather()
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == "p" {
					t.Fatal("the gauge of a policy no config has is still there")
				}
			}
		}
	}
}
