package registryauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"time"

	"github.com/caddyserver/certmagic"
)

// Revocations are the explicit revocations of a policy's refresh tokens,
// kept in Caddy's storage so that every instance sharing it honours them.
// A refresh token issued strictly before its user's time, or before
// AllBefore, is refused; one issued after it, even in the same second, is
// not (refresh tokens carry their issue time to the nanosecond).
type Revocations struct {
	// Users maps a user name to the time before which that user's refresh
	// tokens are revoked.
	Users map[string]time.Time `json:"users,omitempty"`
	// AllBefore revokes every refresh token issued before it.
	AllBefore time.Time `json:"all_before,omitzero"`
}

func revocationsKey(policyName string) string {
	return path.Join("registry_auth", "revocations", policyName+".json")
}

// loadRevocations reads a policy's revocations; none stored is none.
func loadRevocations(ctx context.Context, storage certmagic.Storage, policyName string) (Revocations, error) {
	var r Revocations
	data, err := storage.Load(ctx, revocationsKey(policyName))
	if errors.Is(err, fs.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return r, fmt.Errorf("stored revocations of policy %q: %v", policyName, err)
	}
	return r, nil
}

// revoked reports whether a refresh token of user issued at iat is revoked.
func (r Revocations) revoked(user string, iat time.Time) bool {
	if iat.Before(r.AllBefore) {
		return true
	}
	t, ok := r.Users[user]
	return ok && iat.Before(t)
}

// updateRevocations changes a policy's revocations under a storage lock,
// so concurrent revocations on several instances are all kept.
func updateRevocations(ctx context.Context, storage certmagic.Storage, policyName string, change func(*Revocations)) (Revocations, error) {
	key := revocationsKey(policyName)
	if err := storage.Lock(ctx, key); err != nil {
		return Revocations{}, err
	}
	// Unlock even if the admin client went away mid-request.
	defer func() { _ = storage.Unlock(context.WithoutCancel(ctx), key) }()
	r, err := loadRevocations(ctx, storage, policyName)
	if err != nil {
		return r, err
	}
	change(&r)
	data, err := json.Marshal(r)
	if err != nil {
		return r, err
	}
	return r, storage.Store(ctx, key, data)
}
