package testenv

import (
	"crypto/tls"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestAWSProxyServesOnlyItsHosts(t *testing.T) {
	e := NewECS()
	defer e.Close()
	e.PutCluster(ECSCluster{Name: "ci-cluster"})
	p, err := NewAWSProxy(map[string]http.Handler{"ecs.us-east-2.amazonaws.com": e.Handler()})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	pu, _ := url.Parse(p.URL())
	c := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: p.ca.Pool()}}}

	req, _ := http.NewRequest(http.MethodPost, "https://ecs.us-east-2.amazonaws.com/", strings.NewReader(`{"clusters":["ci-cluster"]}`))
	req.Header.Set("Content-Type", "application/x-amz-json-1.1")
	req.Header.Set("X-Amz-Target", "AmazonEC2ContainerServiceV20141113.DescribeClusters")
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("DescribeClusters through the proxy: %v %v", resp, err)
	}
	resp.Body.Close()
	if e.Calls("DescribeClusters") != 1 {
		t.Errorf("the ECS stand-in did not get the call")
	}

	if _, err := c.Get("https://sts.amazonaws.com/"); err == nil {
		t.Errorf("CONNECT to sts.amazonaws.com went through")
	}
	if got := p.Refused(); len(got) != 1 || got[0] != "CONNECT sts.amazonaws.com:443" {
		t.Errorf("refused = %v", got)
	}
	if got := p.Accepted(); len(got) != 1 || got[0] != "ecs.us-east-2.amazonaws.com:443" {
		t.Errorf("accepted = %v", got)
	}
}
