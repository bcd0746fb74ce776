package registryauth

import "github.com/regauth/caddy-registry-auth/migrate"

// convertPolicy reads a docker_auth or alauda file.
var convertPolicy = migrate.Convert
