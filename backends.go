package registryauth

import (
	"context"
	"errors"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// Identity is who a request is from: a user name ("" for anonymous) and
// the groups that "group:" rules match.
type Identity = policy.Identity

// Authenticator is a source of users besides a policy's own (its users,
// htpasswd files and policy files): a directory, an HTTP service, or a
// module of your own in the registry_auth.authenticators namespace.
//
// A policy asks its own users first and then its authenticators in order.
// The first source that knows a user decides for that user: a wrong
// password there fails the login even if a later source has the same name,
// and a source that cannot answer fails it too. Nothing is ever allowed
// because a source was down.
type Authenticator interface {
	// Authenticate checks a user name and password and returns the user's
	// identity (its Name must be name; its Groups feed "group:" rules),
	// or one of:
	//   - ErrUnknownUser: this source has no such user; the next is asked;
	//   - ErrBadCredentials: the user exists and the password is wrong;
	//   - any other error: the source could not answer; the login fails
	//     and the error is logged (never shown to the client).
	// It must return by ctx's deadline.
	Authenticate(ctx context.Context, name, password string) (Identity, error)
}

// Errors an Authenticator returns.
var (
	ErrUnknownUser    = errors.New("no such user")
	ErrBadCredentials = policy.ErrBadCredentials
)

// Authorizer grants access besides a policy's rules: an HTTP service, or a
// module of your own in the registry_auth.authorizers namespace. What a
// request gets is the union of what the allow rules and every authorizer
// grant, minus what the deny rules take away, intersected with what was
// requested: an authorizer can add access, but never past a deny rule or
// beyond what was asked. An authorizer that fails grants nothing.
type Authorizer interface {
	// Authorize returns the part of req.Scopes that req.Identity may have.
	// It may return any subset, in any order; anything not requested is
	// ignored.
	Authorize(ctx context.Context, req AccessRequest) ([]token.Scope, error)
}

// AccessRequest is what an Authorizer decides on.
type AccessRequest struct {
	Identity Identity
	// Service is the audience the token is for (the registry).
	Service string
	// ClientIP is the address the request came from.
	ClientIP string
	// Scopes are the requested resources and actions, already validated
	// and merged. A requested "*" is token.Every: pull, push and delete
	// plus the All bit, which Strings writes as "*".
	Scopes []token.Scope
}

// Bounds on the groups a source may give one user. A source that gives
// more fails the login: dropping some could drop one a deny rule names.
const (
	MaxGroups      = 1024
	MaxGroupLength = 1024
)

// errSourceDown: an authenticator could not answer, so the login is refused
// (503: the client may retry; nothing is counted against the user).
var errSourceDown = errors.New("the user directory cannot be reached, try again shortly")
