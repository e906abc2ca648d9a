package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

const dashboardPath = "grafana/mcp-gateway.json"

// dashboard is the part of a Grafana dashboard the tests read.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
	Panels []struct {
		ID      int    `json:"id"`
		Type    string `json:"type"`
		Title   string `json:"title"`
		GridPos *struct {
			H, W, X, Y int
		} `json:"gridPos"`
		Datasource *struct {
			Type string `json:"type"`
			UID  string `json:"uid"`
		} `json:"datasource"`
		Targets []struct {
			Expr  string `json:"expr"`
			RefID string `json:"refId"`
		} `json:"targets"`
	} `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardPath, err)
	}
	return d
}

// TestDashboard checks what a Grafana import needs: a uid and title, unique panel ids, every panel placed on the
// 24-column grid, every query on the dashboard's data source variable, and the topics the issue asks for.
func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" || d.SchemaVersion == 0 {
		t.Errorf("uid %q, title %q, schemaVersion %d: want all three", d.UID, d.Title, d.SchemaVersion)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" {
		t.Error("no datasource variable: the dashboard would be tied to one Grafana's data source")
	}
	ids := map[int]bool{}
	var exprs []string
	for _, p := range d.Panels {
		if ids[p.ID] || p.ID == 0 {
			t.Errorf("panel %q: id %d is missing or not unique", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.GridPos == nil || p.GridPos.W <= 0 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H <= 0 {
			t.Errorf("panel %q: gridPos %+v is not on the 24-column grid", p.Title, p.GridPos)
		}
		if p.Type == "row" {
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: want queries on ${datasource}", p.Title)
		}
		for _, q := range p.Targets {
			exprs = append(exprs, q.Expr)
		}
	}
	all := strings.Join(exprs, "\n")
	for _, want := range []string{"mcp_gateway_requests_total", "by (reason)", "histogram_quantile(0.99", "mcp_gateway_open_streams",
		"mcp_gateway_jwks_loaded", "mcp_gateway_jwks_fetches_total", "mcp_gateway_upstream_errors_total", "mcp_gateway_limited_total"} {
		if !strings.Contains(all, want) {
			t.Errorf("no panel queries %s", want)
		}
	}
}

// checkDashboard checks every metric name and grouping label of the dashboard against a gateway's /metrics text.
func checkDashboard(t *testing.T, metrics string) {
	t.Helper()
	d := loadDashboard(t)
	names := regexp.MustCompile(`\bmcp_gateway_[a-z_]+\b`)
	// optional are the metrics a gateway exports only with GATEWAY_POLICY_FILE (their labels name its rules) or
	// GATEWAY_REDIS_URL, and their labels.
	optional := map[string]bool{"mcp_gateway_policy_decisions_total": true, "mcp_gateway_redis_up": true,
		"mcp_gateway_redis_errors_total": true, "outcome": true, "op": true}
	by := regexp.MustCompile(`by \(([^)]*)\)`)
	for _, p := range d.Panels {
		for _, q := range p.Targets {
			for _, n := range names.FindAllString(q.Expr, -1) {
				if !optional[n] && !regexp.MustCompile(`(?m)^`+n+`[{ ]`).MatchString(metrics) {
					t.Errorf("panel %q queries %s, which the gateway does not export", p.Title, n)
				}
			}
			for _, m := range by.FindAllStringSubmatch(q.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					if l = strings.TrimSpace(l); l != "instance" && !optional[l] && !strings.Contains(metrics, l+`="`) {
						t.Errorf("panel %q groups by %s, a label no gateway metric has", p.Title, l)
					}
				}
			}
		}
	}
}
