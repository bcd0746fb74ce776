// Package oidc checks OpenID Connect identity tokens that workloads present
// as passwords (a GitHub Actions or GitLab CI job's, a Kubernetes service
// account's) and maps their claims to names: the issuer's keys, fetched
// and kept (keys.go), the verification of a token (verify.go), and claim
// templates and requirements (template.go). The signatures themselves are
// go-jose's. It knows nothing of Caddy.
package oidc
