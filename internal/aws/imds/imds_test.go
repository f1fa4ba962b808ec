package imds

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/glbootstrap/glbootstrap/internal/testenv"
)

// useEndpoint points the SDK at endpoint through its standard variable only.
func useEndpoint(t *testing.T, endpoint string) {
	t.Helper()
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", endpoint)
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE", "")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "")
}

func TestFetchFromMetadataMock(t *testing.T) {
	for name, tc := range map[string]struct {
		values testenv.IMDSValues
		want   Facts
	}{
		"reference defaults": {
			values: testenv.IMDSValues{},
			want: Facts{
				Region: "us-east-2", InstanceID: "i-0123456789abcdef0", InstanceType: "t3.small", PrivateIPv4: "10.0.1.20",
				MAC: "0e:49:61:0f:c3:11", SubnetID: "subnet-0123456789abcdef0",
				VPCID: "vpc-0123456789abcdef0", VPCCIDR: "10.0.0.0/16",
				SecurityGroups: []string{"sg-0aaaaaaaaaaaaaaaa"},
			},
		},
		"other interface, two groups": {
			values: testenv.IMDSValues{
				Region: "eu-central-1", InstanceID: "i-0fedcba9876543210", InstanceType: "c7g.medium", LocalIPv4: "172.31.5.6",
				MAC: "02:aa:bb:cc:dd:ee", SubnetID: "subnet-0fff", SecurityGroupIDs: []string{"sg-01", "sg-02"},
				VPCID: "vpc-0fff", VPCCIDR: "172.31.0.0/16",
			},
			want: Facts{
				Region: "eu-central-1", InstanceID: "i-0fedcba9876543210", InstanceType: "c7g.medium", PrivateIPv4: "172.31.5.6",
				MAC: "02:aa:bb:cc:dd:ee", SubnetID: "subnet-0fff", VPCID: "vpc-0fff", VPCCIDR: "172.31.0.0/16",
				SecurityGroups: []string{"sg-01", "sg-02"},
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			m, err := testenv.StartIMDS(t.Context(), tc.values)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Close)
			useEndpoint(t, m.Endpoint())

			got, err := Fetch(t.Context())
			if err != nil {
				t.Fatalf("Fetch: %v\nmock output:\n%s", err, m.Output())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Fetch =\n%+v\nwant\n%+v", got, tc.want)
			}
		})
	}
}

func TestFetchStoppedEndpointFailsFast(t *testing.T) {
	m, err := testenv.StartIMDS(t.Context(), testenv.IMDSValues{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	useEndpoint(t, m.Endpoint())

	start := time.Now()
	_, err = Fetch(t.Context())
	elapsed := time.Since(start)
	if err == nil {
		t.Fatal("Fetch succeeded against a stopped endpoint")
	}
	if !errors.Is(err, ErrUnreachable) {
		t.Errorf("error does not wrap ErrUnreachable: %v", err)
	}
	want := "instance metadata (IMDSv2) is not reachable at " + m.Endpoint() + ": "
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error = %q, want prefix %q", err, want)
	}
	if !strings.HasSuffix(err.Error(), "; run this on EC2 with IMDS enabled (hop limit >= 2 in containers), or set AWS_EC2_METADATA_SERVICE_ENDPOINT") {
		t.Errorf("error lacks the advice: %q", err)
	}
	if elapsed > 2*time.Second {
		t.Errorf("Fetch took %s against a refused port, want < 2s", elapsed)
	}
}

// A port that accepts but never answers is what a container sees when the token PUT's response
// is dropped after one hop: Fetch must still give up within its bound.
func TestFetchSilentEndpointIsBounded(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	useEndpoint(t, "http://"+l.Addr().String())

	start := time.Now()
	_, err = Fetch(t.Context())
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Fetch error = %v, want ErrUnreachable", err)
	}
	if elapsed := time.Since(start); elapsed > fetchTimeout+time.Second {
		t.Errorf("Fetch took %s, want <= %s", elapsed, fetchTimeout)
	}
}

// fakeIMDS is a minimal IMDSv2 server for the cases the metadata mock cannot serve (empty
// values, a refused token). It counts GETs that arrive without a token.
type fakeIMDS struct {
	tokenStatus  int
	values       map[string]string
	tokenlessGET atomic.Int32
}

func (f *fakeIMDS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/latest/api/token" {
		if r.Method != http.MethodPut {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		if f.tokenStatus != 0 {
			w.WriteHeader(f.tokenStatus)
			return
		}
		w.Header().Set("X-Aws-Ec2-Metadata-Token-Ttl-Seconds", "60")
		_, _ = w.Write([]byte("tok"))
		return
	}
	if r.Header.Get("X-Aws-Ec2-Metadata-Token") != "tok" {
		f.tokenlessGET.Add(1)
	}
	v, ok := f.values[strings.TrimPrefix(r.URL.Path, "/latest/meta-data/")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write([]byte(v))
}

func fullValues() map[string]string {
	mac := "network/interfaces/macs/0e:49:61:0f:c3:11/"
	return map[string]string{
		"placement/region": "us-east-2", "instance-id": "i-0123456789abcdef0", "instance-type": "t3.micro", "local-ipv4": "10.0.1.20",
		"mac": "0e:49:61:0f:c3:11", mac + "subnet-id": "subnet-0123456789abcdef0", mac + "vpc-id": "vpc-1",
		mac + "vpc-ipv4-cidr-block": "10.0.0.0/16", mac + "security-group-ids": "sg-1\nsg-2\n",
	}
}

func TestFetchAgainstFake(t *testing.T) {
	mac := "network/interfaces/macs/0e:49:61:0f:c3:11/"
	for name, tc := range map[string]struct {
		edit        func(map[string]string)
		tokenStatus int
		wantErr     string
		unreachable bool
	}{
		"all present":           {},
		"empty subnet":          {edit: func(v map[string]string) { v[mac+"subnet-id"] = " \n" }, wantErr: "instance metadata " + mac + "subnet-id is empty"},
		"empty security groups": {edit: func(v map[string]string) { v[mac+"security-group-ids"] = "\n" }, wantErr: "instance metadata " + mac + "security-group-ids is empty"},
		"empty region":          {edit: func(v map[string]string) { v["placement/region"] = "" }, wantErr: "instance metadata placement/region is empty"},
		"missing vpc cidr":      {edit: func(v map[string]string) { delete(v, mac+"vpc-ipv4-cidr-block") }, wantErr: "reading instance metadata " + mac + "vpc-ipv4-cidr-block (HTTP 404 from "},
		// 403 on the token PUT is what makes the SDK fall back to IMDSv1 by default.
		"token refused, no v1 fallback": {tokenStatus: http.StatusForbidden, wantErr: "instance metadata (IMDSv2) is not reachable at ", unreachable: true},
		"token endpoint missing":        {tokenStatus: http.StatusNotFound, wantErr: "instance metadata (IMDSv2) is not reachable at ", unreachable: true},
	} {
		t.Run(name, func(t *testing.T) {
			f := &fakeIMDS{tokenStatus: tc.tokenStatus, values: fullValues()}
			if tc.edit != nil {
				tc.edit(f.values)
			}
			srv := httptest.NewServer(f)
			defer srv.Close()
			useEndpoint(t, srv.URL)

			got, err := Fetch(context.Background())
			if f.tokenlessGET.Load() != 0 {
				t.Errorf("%d GETs without an IMDSv2 token", f.tokenlessGET.Load())
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(got.SecurityGroups, ",") != "sg-1,sg-2" || got.VPCID != "vpc-1" {
					t.Errorf("Fetch = %+v", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Fetch error = %v, want it to contain %q", err, tc.wantErr)
			}
			if errors.Is(err, ErrUnreachable) != tc.unreachable {
				t.Errorf("errors.Is(err, ErrUnreachable) = %v, want %v", !tc.unreachable, tc.unreachable)
			}
			if got.Region != "" || got.SecurityGroups != nil {
				t.Errorf("partial facts returned with an error: %+v", got)
			}
		})
	}
}
