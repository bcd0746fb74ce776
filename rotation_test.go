package registryauth

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

var testTimes = keyTimes{access: 5 * time.Minute, refresh: 90 * 24 * time.Hour, sync: 10 * time.Second}

func docOf(keys ...storedKey) *keyringDoc {
	return &keyringDoc{Keys: keys, RefreshSecret: bytes.Repeat([]byte{1}, 32)}
}

func wantConflict(t *testing.T, err error, says string) {
	t.Helper()
	var c conflictError
	if !errors.As(err, &c) || !strings.Contains(err.Error(), says) {
		t.Fatalf("error %v, want a conflict saying %q", err, says)
	}
}

// TestRotationSteps: stage, promote, retire and drop, with the times a
// key stays published and verifiable after it stops signing.
func TestRotationSteps(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	d := docOf(storedKey{ID: "a", State: keySigning})
	wantConflict(t, d.promote(t0, testTimes), "no key is staged")
	wantConflict(t, d.retire(t0, false), "no previous key")
	if err := d.stage(storedKey{ID: "b", Created: t0}); err != nil {
		t.Fatal(err)
	}
	wantConflict(t, d.stage(storedKey{ID: "c"}), "key b is already staged")
	if err := d.check(); err != nil {
		t.Fatal(err)
	}

	promoted := t0.Add(time.Hour)
	if err := d.promote(promoted, testTimes); err != nil {
		t.Fatal(err)
	}
	a, b := d.byID("a"), d.byID("b")
	if a.State != keyPrevious || b.State != keySigning || !b.Promoted.Equal(promoted) || !a.Demoted.Equal(promoted) {
		t.Fatalf("after promote: a %+v, b %+v", a, b)
	}
	// Published until its last access token (signed up to a sync interval
	// after the promotion, by instances that have not noticed) has expired
	// with the registries' leeway; verified until its last refresh token.
	if want := promoted.Add(10*time.Second + 5*time.Minute + time.Minute); !a.RetireAfter.Equal(want) {
		t.Errorf("retire after %s, want %s", a.RetireAfter, want)
	}
	if want := promoted.Add(10*time.Second + 90*24*time.Hour + 30*time.Second); !a.VerifyUntil.Equal(want) {
		t.Errorf("verify until %s, want %s", a.VerifyUntil, want)
	}
	wantConflict(t, d.retire(a.RetireAfter.Add(-time.Second), false), "may leave the bundle from "+a.RetireAfter.Format(time.RFC3339))
	if err := d.retire(a.RetireAfter, false); err != nil || a.State != keyRetired {
		t.Fatalf("retire when due: %v, state %s", err, a.State)
	}
	if d.expired(a.VerifyUntil) || d.dropExpired(a.VerifyUntil) {
		t.Fatal("dropped at its last second")
	}
	if !d.expired(a.VerifyUntil.Add(time.Second)) || !d.dropExpired(a.VerifyUntil.Add(time.Second)) || d.byID("a") != nil || len(d.Keys) != 1 {
		t.Fatalf("not dropped after: %+v", d.Keys)
	}

	// Refresh tokens off: the access lifetime alone bounds verification.
	d = docOf(storedKey{ID: "a", State: keySigning}, storedKey{ID: "b", State: keyStaged})
	if err := d.promote(t0, keyTimes{access: time.Minute, sync: time.Second}); err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(time.Second + time.Minute + 30*time.Second); !d.byID("a").VerifyUntil.Equal(want) {
		t.Errorf("verify until %s without refresh tokens, want %s", d.byID("a").VerifyUntil, want)
	}
	if err := d.retire(t0, true); err != nil || d.byID("a").State != keyRetired {
		t.Fatalf("forced retire: %v", err)
	}
}

// TestRotationEmergency: one key is left, every other is withdrawn for
// good, and the refresh secret is new.
func TestRotationEmergency(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	d := docOf(storedKey{ID: "a", State: keySigning}, storedKey{ID: "b", State: keyPrevious}, storedKey{ID: "c", State: keyStaged})
	secret := bytes.Repeat([]byte{9}, 32)
	d.emergency(storedKey{ID: "d", State: keyStaged, RetireAfter: t0}, secret, t0)
	if len(d.Keys) != 1 || d.Keys[0].ID != "d" || d.Keys[0].State != keySigning || !d.Keys[0].RetireAfter.IsZero() {
		t.Fatalf("keys after the emergency: %+v", d.Keys)
	}
	if strings.Join(d.Withdrawn, ",") != "a,b,c" || !bytes.Equal(d.RefreshSecret, secret) {
		t.Fatalf("withdrawn %v, secret %x", d.Withdrawn, d.RefreshSecret)
	}
	wantConflict(t, d.stage(storedKey{ID: "a"}), "withdrawn")
	// Promoting the staged key in an emergency withdraws it no more.
	d = docOf(storedKey{ID: "a", State: keySigning}, storedKey{ID: "b", State: keyStaged})
	d.emergency(*d.byID("b"), secret, t0)
	if strings.Join(d.Withdrawn, ",") != "a" {
		t.Fatalf("withdrawn %v", d.Withdrawn)
	}
}

// TestRotationPlan: when automatic rotation stages, promotes and retires.
func TestRotationPlan(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	end := t0.Add(365 * 24 * time.Hour)
	week := 7 * 24 * time.Hour
	p := rotationPlan{stagePeriod: week}
	d := docOf(storedKey{ID: "a", State: keySigning, Source: sourceGenerated, Created: t0, NotAfter: end})
	check := func(at time.Time, stage, promote, retire bool) {
		t.Helper()
		s, pr, r := p.due(d, at)
		if s != stage || pr != promote || r != retire {
			t.Fatalf("at %s: stage %v promote %v retire %v, want %v %v %v", at, s, pr, r, stage, promote, retire)
		}
	}
	// Before the certificate ends: promote a week before, stage a week
	// earlier still.
	stageAt := end.Add(-2 * week)
	check(stageAt.Add(-time.Second), false, false, false)
	check(stageAt, true, false, false)
	if err := d.stage(storedKey{ID: "b", Source: sourceGenerated, Created: stageAt, NotAfter: end.Add(365 * 24 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	check(end.Add(-week).Add(-time.Second), false, false, false)
	check(end.Add(-week), false, true, false)
	// Staged late (the instance was down): the staging period still runs.
	d.byID("b").Created = end.Add(-week)
	check(end.Add(-week).Add(time.Hour), false, false, false)
	check(end.Add(-time.Second), false, false, false)
	// ...unless the certificate has ended: its tokens are refused anyway.
	check(end.Add(time.Second), false, true, false)
	d.byID("b").Created = stageAt
	if err := d.promote(end.Add(-week), testTimes); err != nil {
		t.Fatal(err)
	}
	check(d.byID("a").RetireAfter.Add(-time.Second), false, false, false)
	check(d.byID("a").RetireAfter, false, false, true)

	// Every 30 days: counted from the last promotion (else creation).
	p = rotationPlan{every: 30 * 24 * time.Hour, stagePeriod: week}
	d = docOf(storedKey{ID: "a", State: keySigning, Source: sourceGenerated, Created: t0, NotAfter: end})
	check(t0.Add(23*24*time.Hour-time.Second), false, false, false)
	check(t0.Add(23*24*time.Hour), true, false, false)
	d.Keys[0].Promoted = t0.Add(10 * 24 * time.Hour)
	check(t0.Add(23*24*time.Hour), false, false, false)
	check(t0.Add(33*24*time.Hour), true, false, false)

	// Keys from files are never rotated automatically.
	d = docOf(storedKey{ID: "a", State: keySigning, Source: sourceFile, Created: t0, NotAfter: end})
	check(end, false, false, false)
}

// TestKeyringDocumentCheck: a stored document a signer could not use is
// refused when read.
func TestKeyringDocumentCheck(t *testing.T) {
	for name, raw := range map[string]string{
		"not JSON":        `{`,
		"no signing key":  `{"keys":[{"id":"a","state":"staged"}],"refresh_secret":"AAAAAAAAAAAAAAAAAAAAAA=="}`,
		"two signing":     `{"keys":[{"id":"a","state":"signing"},{"id":"b","state":"signing"}],"refresh_secret":"AAAAAAAAAAAAAAAAAAAAAA=="}`,
		"unknown state":   `{"keys":[{"id":"a","state":"signing"},{"id":"b","state":"resting"}],"refresh_secret":"AAAAAAAAAAAAAAAAAAAAAA=="}`,
		"no secret":       `{"keys":[{"id":"a","state":"signing"}]}`,
		"a short secret":  `{"keys":[{"id":"a","state":"signing"}],"refresh_secret":"AAAA"}`,
		"keys not a list": `{"keys":{},"refresh_secret":"AAAAAAAAAAAAAAAAAAAAAA=="}`,
	} {
		if _, err := parseKeyring([]byte(raw)); err == nil || !strings.HasPrefix(err.Error(), "stored keyring: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := parseKeyring([]byte(`{"keys":[{"id":"a","state":"signing","later":1}],"refresh_secret":"AAAAAAAAAAAAAAAAAAAAAA==","newer":true}`)); err != nil {
		t.Errorf("fields of a newer version: %v", err)
	}
}

// FuzzParseKeyring: a stored document never panics the parser, and one
// it accepts has exactly one signing key and a secret.
func FuzzParseKeyring(f *testing.F) {
	f.Add([]byte(`{"keys":[{"id":"a","state":"signing"}],"refresh_secret":"AAAAAAAAAAAAAAAAAAAAAA=="}`))
	f.Add([]byte(`{"keys":[{"id":"a","state":"signing"},{"id":"b","state":"previous","verify_until":"2030-01-01T00:00:00Z"}],"refresh_secret":"AAAAAAAAAAAAAAAAAAAAAA==","withdrawn":["c"]}`))
	f.Add([]byte(`{"keys":null}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := parseKeyring(raw)
		if err != nil {
			return
		}
		if d.find(keySigning) == nil || len(d.RefreshSecret) < 16 {
			t.Fatalf("accepted %q", raw)
		}
		_, _, _ = rotationPlan{stagePeriod: time.Hour}.due(d, time.Now())
		d.dropExpired(time.Now())
	})
}
