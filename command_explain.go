package registryauth

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/regauth/caddy-registry-auth/policy"
	"github.com/regauth/caddy-registry-auth/token"
)

// explainCommand is `caddy registry-auth explain`: what a user gets of
// each scope under a configuration, and every rule that decided.
func explainCommand() *cobra.Command {
	var req explainRequest
	var configFile, adapter string
	cmd := &cobra.Command{
		Use:   "explain --config <file> [--adapter caddyfile] [--policy <name>] --user <name>|- [--group <g>]... <scope>...",
		Short: "Say what a user gets of each scope, and which rules decide it",
		Long: `
Prints, for each scope (e.g. repository:team/app:pull,push), the actions the
user gets under the configuration's policy and every rule that allowed or
denied them, with where it was written (a Caddyfile line, or a policy file
and the rule's index), and the immutable tag rules of the repository. The
user "-" is anonymous; --group adds groups a directory or an identity
provider would give. Policy files are read as they are now; authenticators
and authorizers are not asked. Exit status: 0 when anything is granted, 1
when nothing is, 2 on an error.`,
		Args: cobra.MinimumNArgs(1),
		Run: func(cmd *cobra.Command, args []string) {
			req.scopes = args
			os.Exit(runExplain(configFile, adapter, req, cmd.OutOrStdout(), cmd.ErrOrStderr()))
		},
	}
	cmd.Flags().StringVar(&configFile, "config", "", "the configuration file (a Caddyfile, or Caddy JSON)")
	cmd.Flags().StringVar(&adapter, "adapter", "", "the configuration's adapter (default: caddyfile for a file named Caddyfile)")
	cmd.Flags().StringVar(&req.policy, "policy", DefaultPolicy, "the registry_auth policy")
	cmd.Flags().StringVar(&req.user, "user", "", "the user name, or - for anonymous")
	cmd.Flags().StringArrayVar(&req.groups, "group", nil, "a group the user is in, besides the policy's own (repeatable)")
	_ = cmd.MarkFlagRequired("config")
	_ = cmd.MarkFlagRequired("user")
	return cmd
}

// explainRequest is what the command and the admin API are asked.
type explainRequest struct {
	policy, user string
	groups       []string
	scopes       []string
}

// runExplain loads the configuration, explains, and returns the exit
// status.
func runExplain(configFile, adapter string, req explainRequest, stdout, stderr io.Writer) int {
	pc, err := loadPolicyConfig(configFile, adapter, req.policy)
	if err == nil {
		var snap *policy.Compiled
		if snap, err = compilePolicyConfig(pc); err == nil {
			var granted bool
			if granted, err = req.write(stdout, snap, len(pc.AuthorizersRaw) > 0); err == nil {
				if granted {
					return 0
				}
				return 1
			}
		}
	}
	fmt.Fprintf(stderr, "explain: %v\n", err)
	return 2
}

// loadPolicyConfig reads one policy of a configuration file.
func loadPolicyConfig(configFile, adapter, name string) (*PolicyConfig, error) {
	cfgJSON, _, _, err := caddycmd.LoadConfig(configFile, adapter)
	if err != nil {
		return nil, err
	}
	var cfg struct {
		Apps struct {
			RegistryAuth *App `json:"registry_auth"`
		} `json:"apps"`
	}
	if err := json.Unmarshal(cfgJSON, &cfg); err != nil {
		return nil, err
	}
	if cfg.Apps.RegistryAuth == nil || cfg.Apps.RegistryAuth.Policies[name] == nil {
		return nil, fmt.Errorf("%s has no registry_auth policy named %q", configFile, name)
	}
	return cfg.Apps.RegistryAuth.Policies[name], nil
}

// compilePolicyConfig compiles a policy's users, groups, rules and files,
// as provisioning does (with no key and no modules).
func compilePolicyConfig(pc *PolicyConfig) (*policy.Compiled, error) {
	source, err := newPolicySource(pc)
	if err != nil {
		return nil, err
	}
	snap, _, _, err := source.compile()
	return snap, err
}

// write prints the explanation of each scope, and reports whether any
// was granted.
func (req explainRequest) write(w io.Writer, snap *policy.Compiled, authorizers bool) (granted bool, err error) {
	if req.user == "" {
		return false, errors.New("user: give a name, or - for anonymous")
	}
	id := Identity{Name: req.user, Groups: req.groups}
	if req.user == "-" {
		id = Identity{}
	}
	scopes, err := token.ParseScopes(req.scopes)
	if err != nil {
		return false, err
	}
	if len(scopes) == 0 {
		return false, fmt.Errorf("no scope of a known type in %q (want repository:<name>:<actions> or registry:catalog:*)", strings.Join(req.scopes, " "))
	}
	id = snap.WithGroups(id)
	who := "anonymous"
	if !id.Anonymous() {
		who = fmt.Sprintf("user %s, groups [%s]", id.Name, strings.Join(id.Groups, " "))
	}
	fmt.Fprintf(w, "policy %s, %s\n", req.policy, who)
	if authorizers {
		fmt.Fprintf(w, "(the policy's authorizers are not asked here: they may grant more, never past a deny)\n")
	}
	es := explain(snap, id, scopes)
	writeExplanations(w, es)
	for _, e := range es {
		granted = granted || e.granted != 0
	}
	return granted, nil
}
