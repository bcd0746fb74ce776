// Package token holds the wire formats of the distribution token-auth
// protocol: the scopes a client asks for, the claims of the JWT a registry
// verifies, and the signer that makes (and checks) those JWTs with a key
// both registry families, distribution 2.8 and 3.x, accept.
//
// It knows nothing of Caddy or of who may do what: deciding that is the job
// of package policy.
package token
