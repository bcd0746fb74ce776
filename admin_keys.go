package registryauth

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/regauth/caddy-registry-auth/token"
)

// The signing keys through Caddy's admin endpoint (the adminAPI module):
//
//	GET  /registry_auth/keys?policy=NAME      the keys and their states
//	POST /registry_auth/keys/stage     {"policy":"default"}
//	POST /registry_auth/keys/promote   {"policy":"default"}
//	POST /registry_auth/keys/retire    {"policy":"default","force":false}
//	POST /registry_auth/keys/emergency {"policy":"default","confirm":true}
//
// Each step changes the policy's keyring in storage under its lock and
// takes effect here at once, on the other instances sharing the storage
// within their sync_interval. A POST answers with the keys as they are
// after the step; a step the keys' state does not allow is a 409.

const keysRoute = "/registry_auth/keys"

// Rotation steps, as named in the admin API's paths.
const (
	stepStage     = "stage"
	stepPromote   = "promote"
	stepRetire    = "retire"
	stepEmergency = "emergency"
)

// keyRequest is the body of a rotation step.
type keyRequest struct {
	Policy string `json:"policy"`
	// Force retires previous keys before their access tokens have
	// expired.
	Force bool `json:"force"`
	// Confirm must be true for an emergency, which refuses every token
	// any other key signed.
	Confirm bool `json:"confirm"`
}

// keyringStatus is what the admin API says of a policy's keys: never a
// private key or the refresh secret.
type keyringStatus struct {
	Policy   string `json:"policy"`
	Rotation string `json:"rotation"` // auto or manual
	// NextStage and NextPromotion are the automatic rotation's next
	// steps.
	NextStage     time.Time   `json:"next_stage,omitzero"`
	NextPromotion time.Time   `json:"next_promotion,omitzero"`
	Keys          []keyStatus `json:"keys"`
	Withdrawn     []string    `json:"withdrawn,omitempty"`
}

// keyStatus is one key: storedKey without its private half, with the key
// id its tokens carry.
type keyStatus struct {
	ID          string    `json:"id"`
	State       string    `json:"state"`
	Source      string    `json:"source"`
	Algorithm   string    `json:"algorithm"`
	KeyID       string    `json:"kid"`
	Created     time.Time `json:"created"`
	NotAfter    time.Time `json:"not_after"`
	Promoted    time.Time `json:"promoted,omitzero"`
	Demoted     time.Time `json:"demoted,omitzero"`
	RetireAfter time.Time `json:"retire_after,omitzero"`
	VerifyUntil time.Time `json:"verify_until,omitzero"`
}

func (a *adminAPI) keys(w http.ResponseWriter, r *http.Request) error {
	step := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, keysRoute), "/")
	switch {
	case step == "" && r.Method == http.MethodGet:
		k, err := runningKeyring(r.URL.Query().Get("policy"))
		if err != nil {
			return err
		}
		return k.writeStatus(r.Context(), w)
	case step == "":
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("GET the keys, or POST to " + keysRoute + "/<step>")}
	case step != stepStage && step != stepPromote && step != stepRetire && step != stepEmergency:
		return caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("unknown step %q (want stage, promote, retire or emergency)", step)}
	case r.Method != http.MethodPost:
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: fmt.Errorf("POST to run the %s step", step)}
	}
	var req keyRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("decoding the request: %v", err)}
	}
	if step == stepEmergency && !req.Confirm {
		return caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: errors.New(`an emergency refuses every token the other keys signed, and makes every user log in again: send "confirm": true`)}
	}
	k, err := runningKeyring(req.Policy)
	if err != nil {
		return err
	}
	st, err := k.runStep(r.Context(), step, req)
	var c conflictError
	switch {
	case errors.As(err, &c):
		return caddy.APIError{HTTPStatus: http.StatusConflict, Err: err}
	case err != nil:
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return json.NewEncoder(w).Encode(st)
}

// runningKeyring is the keyring of the running policy called name.
func runningKeyring(name string) (*keyring, error) {
	if name == "" {
		name = DefaultPolicy
	}
	if !validPolicyName(name) {
		return nil, caddy.APIError{HTTPStatus: http.StatusBadRequest, Err: fmt.Errorf("invalid policy name %q", name)}
	}
	k := runningKeyrings.get(name)
	if k == nil {
		return nil, caddy.APIError{HTTPStatus: http.StatusNotFound, Err: fmt.Errorf("no running registry_auth policy named %q", name)}
	}
	return k, nil
}

func (k *keyring) writeStatus(ctx context.Context, w http.ResponseWriter) error {
	d, err := k.load(ctx)
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	return json.NewEncoder(w).Encode(k.status(d))
}

// runStep runs one rotation step, stores it and applies it here.
func (k *keyring) runStep(ctx context.Context, step string, req keyRequest) (keyringStatus, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	raw, d, err := k.update(ctx, func(d *keyringDoc, now time.Time) error { return k.step(d, now, step, req.Force) }, false)
	if err == nil {
		err = k.apply(raw, d)
	}
	if err != nil {
		return keyringStatus{}, err
	}
	k.logger.Warn("signing key rotation step", zap.String("policy", k.name), zap.String("step", step),
		zap.String("signing", d.find(keySigning).ID))
	return k.status(d), nil
}

func (k *keyring) step(d *keyringDoc, now time.Time, step string, force bool) error {
	switch step {
	case stepStage:
		switch {
		case len(k.files) > 0:
			return conflict("with key files, stage the next key by naming it in next_key_file and next_cert_file, then reload")
		case k.cfg.KeyID != "":
			return conflict("key_id names a single key: remove it to rotate keys")
		}
		next, _, err := k.generate(now)
		if err != nil {
			return err
		}
		return d.stage(next)
	case stepPromote:
		if s := d.find(keyStaged); s != nil && s.Source == sourceFile && k.fileByID(s.ID) == nil {
			return conflict("key %s is staged from a next_key_file this instance does not have: promote it where it is configured", s.ID)
		}
		return d.promote(now, k.times)
	case stepRetire:
		return d.retire(now, force)
	}
	return k.emergency(d, now)
}

// emergency replaces every key at once: by a new generated key, or by
// next_key_file's key (staged) when keys come from files.
func (k *keyring) emergency(d *keyringDoc, now time.Time) error {
	var next storedKey
	var private crypto.Signer
	var err error
	if len(k.files) > 0 {
		s := d.find(keyStaged)
		var f *fileKey
		if s != nil {
			f = k.fileByID(s.ID)
		}
		if f == nil {
			return conflict("with key files, an emergency promotes next_key_file's key: put a new key there and reload first")
		}
		next, private = *s, f.private
	} else if next, private, err = k.generate(now); err != nil {
		return err
	}
	secret, err := token.DeriveSecret(private)
	if err != nil {
		return err
	}
	d.emergency(next, secret, now)
	return nil
}

// status describes the document for the admin API.
func (k *keyring) status(d *keyringDoc) keyringStatus {
	st := keyringStatus{Policy: k.name, Rotation: rotationManual, Withdrawn: d.Withdrawn}
	if signing := d.find(keySigning); k.cfg.automatic() && signing.Source == sourceGenerated {
		st.Rotation = rotationAuto
		st.NextPromotion = k.plan.promoteAt(signing)
		if d.find(keyStaged) == nil {
			st.NextStage = st.NextPromotion.Add(-k.plan.stagePeriod)
		}
	}
	for _, s := range d.Keys {
		ks := keyStatus{ID: s.ID, State: s.State, Source: s.Source, Algorithm: s.Algorithm, Created: s.Created, NotAfter: s.NotAfter,
			Promoted: s.Promoted, Demoted: s.Demoted, RetireAfter: s.RetireAfter, VerifyUntil: s.VerifyUntil}
		if chain, err := token.ParseCertificatesPEM([]byte(s.CertPEM)); err == nil {
			opts := token.SignerOptions{Algorithm: s.Algorithm, Header: k.cfg.Header}
			if s.State == keySigning {
				opts.KeyID = k.cfg.KeyID
			}
			if key, err := token.NewVerifyKey(chain, opts); err == nil {
				ks.KeyID = key.KeyID()
			}
		}
		st.Keys = append(st.Keys, ks)
	}
	// In the order of their lives: staged, signing, previous, retired.
	order := []string{keyStaged, keySigning, keyPrevious, keyRetired}
	slices.SortStableFunc(st.Keys, func(a, b keyStatus) int { return slices.Index(order, a.State) - slices.Index(order, b.State) })
	return st
}
