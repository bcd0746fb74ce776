module github.com/regauth/caddy-registry-auth/bench

go 1.26.0

require (
	github.com/regauth/caddy-registry-auth v0.0.0
	golang.org/x/crypto v0.57.0
)

require github.com/golang-jwt/jwt/v5 v5.3.1 // indirect

replace github.com/regauth/caddy-registry-auth => ../
