package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// alertRules is where the shipped rules live, from e2e/.
const alertRules = "../deploy/prometheus/alerts.yml"

// TestAlertRulesMatchMetrics scrapes a running Caddy after traffic that
// makes the plugin's series appear, lints the exposition with `promtool
// check metrics`, and checks that every metric the alert rules name is
// exported under that name, with the labels they match on and label values
// the code produces (seen in the scrape, or listed in the metric's help).
// A rule about a renamed or misspelled series would otherwise never fire.
func TestAlertRulesMatchMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed (Debian package prometheus): it lints the exposition")
	}
	exported := scrapeAfterTraffic(t)

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(exported)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	texts := ruleTexts(t)
	exp := parseExposition(exported)
	for _, p := range exp.check(texts) {
		t.Error(p)
	}

	// The check itself must catch drift: a misspelled name, a label the
	// metric lacks, and a value the code never produces.
	broken := []string{
		`rate(caddy_registry_auth_login_total{result="failed"}[5m])`,
		`rate(caddy_registry_auth_logins_total{outcome="failed"}[5m])`,
		`rate(caddy_registry_auth_logins_total{result=~"ok|rejected"}[5m])`,
	}
	if problems := exp.check(broken); len(problems) != len(broken) {
		t.Errorf("the check found %d problems in %d broken expressions: %q", len(problems), len(broken), problems)
	}
}

// scrapeAfterTraffic runs Caddy with a proxy site and a policy file,
// makes one good and one bad login, an anonymous proxied request, and a
// failed and a good policy reload, and returns the whole /metrics page.
func scrapeAfterTraffic(t *testing.T) string {
	t.Helper()
	policyFile := filepath.Join(t.TempDir(), "policy.json")
	check(t, os.WriteFile(policyFile, []byte(teamFile(t, "metered")), 0o600))
	regPort, proxyPort := FreePort(), FreePort()
	startV3(t, shared, registrySetup{port: regPort})
	files := fmt.Sprintf("throttle 1000\n\t\tpolicy_file %s\n\t\treload_interval 100ms", policyFile)
	if status, body := loadCaddyfile(t, strings.Replace(shared.caddyfile(proxySite(proxyPort, regPort)), "throttle 1000", files, 1)); status != http.StatusOK {
		t.Fatalf("loading the config: %d %s", status, body)
	}
	t.Cleanup(func() { loadCaddyfile(t, shared.caddyfile("")) })
	proxyURL := fmt.Sprintf("http://localhost:%d/v2/", proxyPort)
	check(t, WaitHTTP(proxyURL+"metered/app/tags/list", http.StatusUnauthorized))

	for _, pw := range []string{"metered-pw", "wrong"} {
		req, _ := http.NewRequest(http.MethodGet, shared.realm+"?service="+service, nil)
		req.SetBasicAuth("metered", pw)
		resp, err := http.DefaultClient.Do(req)
		check(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	// A broken file, then a good one: both reload results are counted.
	reloads := func(result string) float64 {
		return scrape(t)[`caddy_registry_auth_policy_reloads_total{result="`+result+`"}`]
	}
	for _, step := range []struct{ content, result string }{{"{", "failed"}, {teamFile(t, "metered", "other"), "ok"}} {
		before := reloads(step.result)
		check(t, os.WriteFile(policyFile, []byte(step.content), 0o600))
		for deadline := time.Now().Add(10 * time.Second); reloads(step.result) <= before; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("policy_reloads_total{result=%q} did not grow", step.result)
			}
		}
	}

	resp, err := http.Get("http://localhost:2999/metrics")
	check(t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	check(t, err)
	return string(data)
}

// ruleTexts returns each rule's expression and annotations: the
// descriptions name series too.
func ruleTexts(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(alertRules)
	check(t, err)
	var file struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `yaml:"alert"`
				Expr        string            `yaml:"expr"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	check(t, yaml.Unmarshal(data, &file))
	var texts []string
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			texts = append(texts, r.Expr)
			for _, a := range r.Annotations {
				texts = append(texts, a)
			}
		}
	}
	if len(texts) < 10 {
		t.Fatalf("%s: only %d rule texts", alertRules, len(texts))
	}
	return texts
}

// exposition is what a scrape says about each series name: its help text
// (a histogram's parts share their family's) and the values seen per label.
type exposition struct {
	help   map[string]string
	labels map[string]map[string][]string // name → label → values
}

var (
	sampleRE   = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? `)
	labelRE    = regexp.MustCompile(`(\w+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	selectorRE = regexp.MustCompile(`\b(caddy_registry_auth_[a-z_]+)(\{[^}]*\})?`)
)

func parseExposition(text string) exposition {
	e := exposition{help: map[string]string{}, labels: map[string]map[string][]string{}}
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# HELP "); ok {
			name, help, _ := strings.Cut(rest, " ")
			e.help[name] = help
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if e.labels[m[1]] == nil {
			e.labels[m[1]] = map[string][]string{}
		}
		for _, l := range labelRE.FindAllStringSubmatch(m[2], -1) {
			if !slices.Contains(e.labels[m[1]][l[1]], l[3]) {
				e.labels[m[1]][l[1]] = append(e.labels[m[1]][l[1]], l[3])
			}
		}
	}
	return e
}

// helpOf returns the help text of a series name, or of its histogram.
func (e exposition) helpOf(name string) string {
	for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
		if h, ok := e.help[strings.TrimSuffix(name, suffix)]; ok && strings.HasSuffix(name, suffix) {
			return h
		}
	}
	return ""
}

// check returns what in the texts does not match the exposition.
func (e exposition) check(texts []string) (problems []string) {
	for _, text := range texts {
		for _, sel := range selectorRE.FindAllStringSubmatch(text, -1) {
			name := sel[1]
			labels, ok := e.labels[name]
			if !ok {
				problems = append(problems, name+" is not exported")
				continue
			}
			for _, m := range labelRE.FindAllStringSubmatch(sel[2], -1) {
				label, op, value := m[1], m[2], m[3]
				seen, ok := labels[label]
				if !ok {
					problems = append(problems, fmt.Sprintf("%s has no label %q (%s)", name, label, sel[0]))
					continue
				}
				if op != "=" && op != "=~" {
					continue
				}
				for _, v := range strings.Split(value, "|") {
					if !slices.Contains(seen, v) && !helpNames(e.helpOf(name), v) {
						problems = append(problems, fmt.Sprintf("%s{%s=%q}: the code neither produced nor documents that value", name, label, v))
					}
				}
			}
		}
	}
	return problems
}

// helpNames reports whether a help text lists value as a word.
func helpNames(help, value string) bool {
	words := strings.FieldsFunc(help, func(r rune) bool {
		return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	})
	return slices.Contains(words, value)
}
