package testenv

import (
	"context"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"
)

// imdsGet does the IMDSv2 dance by hand so the test checks the mock, not the SDK.
func imdsGet(t *testing.T, endpoint, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, endpoint+path, nil)
	if token != "" {
		req.Header.Set("X-aws-ec2-metadata-token", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestStartIMDSServesValuesUnderConfiguredMAC(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	v := IMDSValues{
		MAC:              "0a:1b:2c:3d:4e:5f",
		Region:           "eu-west-3",
		SecurityGroupIDs: []string{"sg-0aaaaaaaaaaaaaaaa", "sg-0bbbbbbbbbbbbbbbb"},
	}
	m, err := StartIMDS(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	req, _ := http.NewRequest(http.MethodPut, m.Endpoint()+"/latest/api/token", nil)
	req.Header.Set("X-aws-ec2-metadata-token-ttl-seconds", "60")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	tb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	token := string(tb)
	if resp.StatusCode != 200 || token == "" {
		t.Fatalf("token PUT: %d %q", resp.StatusCode, token)
	}

	// IMDSv2 only: a GET without a token is refused.
	if code, _ := imdsGet(t, m.Endpoint(), "/latest/meta-data/instance-id", ""); code != http.StatusUnauthorized {
		t.Errorf("GET without token: status %d, want 401", code)
	}

	d := DefaultIMDSValues()
	mac := "/latest/meta-data/network/interfaces/macs/" + v.MAC + "/"
	for path, want := range map[string]string{
		"/latest/meta-data/placement/region": "eu-west-3",
		"/latest/meta-data/instance-id":      d.InstanceID,
		"/latest/meta-data/instance-type":    d.InstanceType,
		"/latest/meta-data/local-ipv4":       d.LocalIPv4,
		"/latest/meta-data/mac":              v.MAC,
		mac + "subnet-id":                    d.SubnetID,
		mac + "security-group-ids":           "sg-0aaaaaaaaaaaaaaaa\nsg-0bbbbbbbbbbbbbbbb",
		mac + "vpc-id":                       d.VPCID,
		mac + "vpc-ipv4-cidr-block":          d.VPCCIDR,
	} {
		code, got := imdsGet(t, m.Endpoint(), path, token)
		if code != 200 || strings.TrimSpace(got) != want {
			t.Errorf("GET %s = %d %q, want 200 %q", path, code, got, want)
		}
	}
	// Nothing is left under the mock's built-in MAC.
	if code, _ := imdsGet(t, m.Endpoint(), "/latest/meta-data/network/interfaces/macs/0e:49:61:0f:c3:11/subnet-id", token); code == 200 {
		t.Errorf("default MAC path still served")
	}
	code, doc := imdsGet(t, m.Endpoint(), "/latest/dynamic/instance-identity/document", token)
	if code != 200 || !strings.Contains(doc, `"region": "eu-west-3"`) && !strings.Contains(doc, `"region":"eu-west-3"`) {
		t.Errorf("identity document = %d %s", code, doc)
	}

	m.Close()
	if _, err := http.Get(m.Endpoint() + "/latest/meta-data/"); err == nil {
		t.Errorf("mock still answers after Close")
	}
}

func TestIMDSDefaultsFillEmptyFields(t *testing.T) {
	got := IMDSValues{Region: "eu-west-3"}.withDefaults()
	want := DefaultIMDSValues()
	want.Region = "eu-west-3"
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("withDefaults = %+v, want %+v", got, want)
	}
}
