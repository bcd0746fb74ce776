package registryauth

import (
	"encoding/json"
	"fmt"
	"io"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/regauth/caddy-registry-auth/migrate"
	"github.com/regauth/caddy-registry-auth/policy"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "registry-auth",
		Usage: "convert|explain|keys ...",
		Short: "Tools for the registry_auth plugin",
		Long: `
"caddy registry-auth convert" reads the users and access rules of a
cesanta/docker_auth config (its users and acl) or of an alauda/registry-auth
config (its users and auths), YAML or JSON, and prints the equivalent policy
file in this plugin's JSON format on standard output. The policy grants
exactly what the original granted where rules can say it; warnings go to
standard error: each construct whose meaning changes (always towards
granting less, with the rule to add) and advice. A construct that cannot
be translated safely is an error.
The same files can also be read directly: policy_file <path> docker_auth.

"caddy registry-auth explain" says what a user gets of each scope under a
configuration's policy, and which rules (with their Caddyfile line or policy
file) decide it.

"caddy registry-auth keys" shows a policy's signing keys or runs one step of
their rotation (stage, promote, retire, emergency) through the admin API of
a running Caddy; see "caddy registry-auth keys --help".`,
		CobraFunc: func(cmd *cobra.Command) {
			convert := &cobra.Command{
				Use:   "convert --from docker_auth|alauda <file>|-",
				Short: "Print a docker_auth or alauda config as a registry_auth policy file",
				Args:  cobra.ExactArgs(1),
				RunE: func(cmd *cobra.Command, args []string) error {
					from, _ := cmd.Flags().GetString("from")
					return runConvert(from, args[0], cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
				},
			}
			convert.Flags().String("from", "", "the format of the input: docker_auth or alauda")
			_ = convert.MarkFlagRequired("from")
			cmd.AddCommand(convert, explainCommand(), keysCommand())
		},
	})
}

// runConvert converts the file at path ("-": stdin) from format.
func runConvert(format, path string, stdin io.Reader, stdout, stderr io.Writer) error {
	if err := migrate.CheckFormat(format); err != nil {
		return fmt.Errorf("--from: %v", err)
	}
	var data []byte
	var err error
	if path == "-" {
		data, err = readAllBounded(stdin, "standard input")
	} else {
		data, err = readBounded(path)
	}
	if err != nil {
		return err
	}
	cfg, warnings, err := migrate.Convert(format, data)
	if err != nil {
		return fmt.Errorf("%s: %v", path, err)
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	// What is printed must load: check it as the plugin will.
	_, more, err := policy.Compile(cfg)
	if err != nil {
		return fmt.Errorf("%s: the converted policy does not compile: %v", path, err)
	}
	for _, w := range more {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	out, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", out)
	return err
}
