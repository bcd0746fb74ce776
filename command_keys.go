package registryauth

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// keysOptions are the flags of `caddy registry-auth keys`.
type keysOptions struct {
	step, policy             string
	address, config, adapter string
	force, yes, json         bool
}

// keysCommand is `caddy registry-auth keys`: the admin API's key routes
// from the command line of the host Caddy runs on.
func keysCommand() *cobra.Command {
	var o keysOptions
	c := &cobra.Command{
		Use:   "keys status|stage|promote|retire|emergency",
		Short: "Show or rotate a policy's signing keys in a running Caddy",
		Long: `
Shows the signing keys of a registry_auth policy (status), or runs one step
of a rotation through the admin API of a running Caddy:

  stage      publish a new key in the bundle and JWKS; the current one
             still signs (generated keys; key files: next_key_file)
  promote    the staged key signs from now on; the old one stays published
  retire     the old key leaves the bundle once its access tokens have
             expired (--force: at once); it still verifies refresh tokens
  emergency  a new key signs at once and every other key is withdrawn,
             with every token it signed (--yes to confirm)

Every Caddy sharing the storage follows within its sync_interval. Restart
the registries with the new bundle between stage and promote.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.step = args[0]
			return runKeys(o, cmd.OutOrStdout())
		},
	}
	f := c.Flags()
	f.StringVar(&o.policy, "policy", DefaultPolicy, "the registry_auth policy")
	f.StringVar(&o.address, "address", "", "the admin API's address, if not the default")
	f.StringVarP(&o.config, "config", "c", "", "configuration file to read the admin address from, if --address is not used")
	f.StringVarP(&o.adapter, "adapter", "a", "", "name of the config adapter (with --config)")
	f.BoolVar(&o.force, "force", false, "retire: before the old key's access tokens have expired")
	f.BoolVar(&o.yes, "yes", false, "emergency: confirm that every token of the other keys is refused from now on")
	f.BoolVar(&o.json, "json", false, "print the admin API's JSON answer")
	return c
}

// runKeys sends the step to the admin API and prints the keys after it.
func runKeys(o keysOptions, out io.Writer) error {
	var method, uri string
	var body io.Reader
	switch o.step {
	case "status":
		method, uri = http.MethodGet, keysRoute+"?policy="+url.QueryEscape(o.policy)
	case stepStage, stepPromote, stepRetire, stepEmergency:
		if o.step == stepEmergency && !o.yes {
			return fmt.Errorf("an emergency refuses every token the other keys signed and makes every user log in again: add --yes")
		}
		data, _ := json.Marshal(keyRequest{Policy: o.policy, Force: o.force, Confirm: o.yes})
		method, uri, body = http.MethodPost, keysRoute+"/"+o.step, bytes.NewReader(data)
	default:
		return fmt.Errorf("unknown step %q: want status, stage, promote, retire or emergency", o.step)
	}
	addr, err := caddycmd.DetermineAdminAPIAddress(o.address, nil, o.config, o.adapter)
	if err != nil {
		return err
	}
	resp, err := caddycmd.AdminAPIRequest(addr, method, uri, nil, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if o.json {
		_, err = out.Write(answer)
		return err
	}
	var st keyringStatus
	if err := json.Unmarshal(answer, &st); err != nil {
		return fmt.Errorf("reading the admin API's answer: %v", err)
	}
	return printKeys(out, st)
}

// printKeys prints a policy's keys as a table.
func printKeys(out io.Writer, st keyringStatus) error {
	fmt.Fprintf(out, "policy %s, rotation %s", st.Policy, st.Rotation)
	if !st.NextStage.IsZero() {
		fmt.Fprintf(out, ", next stage %s", day(st.NextStage))
	}
	if !st.NextPromotion.IsZero() {
		fmt.Fprintf(out, ", next promotion %s", day(st.NextPromotion))
	}
	fmt.Fprintln(out)
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "STATE\tID\tALG\tCREATED\tCERT ENDS\tRETIRE AFTER\tVERIFIED UNTIL\tKID")
	for _, k := range st.Keys {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k.State, k.ID, k.Algorithm, day(k.Created), day(k.NotAfter),
			day(k.RetireAfter), day(k.VerifyUntil), k.KeyID)
	}
	for _, id := range st.Withdrawn {
		fmt.Fprintf(w, "withdrawn\t%s\t\t\t\t\t\t\n", id)
	}
	return w.Flush()
}

// day prints a time to the second, in UTC; "-" for none.
func day(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
