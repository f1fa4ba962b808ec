package testenv

import (
	"encoding/xml"
	"fmt"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"sync"
)

// EC2 is an in-process stand-in for the VPC read side of Amazon EC2 that speaks the ec2Query
// protocol (POST / with a form body Action=<Op>&Version=2016-11-15&..., lists flattened as
// Name.1, Filter.1.Name / Filter.1.Value.1; XML answers <OpResponse> with lists as
// <xxxSet><item>), so the real aws-sdk-go-v2 EC2 client can be pointed at it with
// AWS_ENDPOINT_URL_EC2=URL().
//
// Operations: DescribeSecurityGroups (GroupId.N), DescribeSubnets (SubnetId.N),
// DescribeRouteTables (filters association.subnet-id, vpc-id, association.main),
// DescribeVpcEndpoints (filter vpc-id), DescribeNetworkInterfaces (NetworkInterfaceId.N, no
// filters: the ENIs of AddENISource's sources, the ECS stand-in's tasks). Unknown ids answer
// InvalidGroup.NotFound / InvalidSubnetID.NotFound / InvalidNetworkInterfaceID.NotFound (and an
// id not shaped eni-HEX InvalidNetworkInterfaceID.Malformed); Deny makes an operation answer UnauthorizedOperation (HTTP 403),
// both as <Response><Errors><Error><Code/><Message/></Error></Errors><RequestID/></Response>.
type EC2 struct {
	srv *httptest.Server

	mu          sync.Mutex
	groups      map[string]EC2SecurityGroup
	subnets     map[string]EC2Subnet
	routeTables []EC2RouteTable
	endpoints   []EC2VPCEndpoint
	denied      map[string]bool
	calls       map[string]int
	eniSources  []EC2ENISource
}

// EC2NetworkInterface is an ENI as DescribeNetworkInterfaces reports it
// (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_NetworkInterface.html). PublicIP,
// when set, is the association's publicIp, on the interface and on its primary private address.
type EC2NetworkInterface struct {
	ID, SubnetID, MAC          string
	PrivateIP, PrivateDNS      string
	PublicIP                   string
	SecurityGroups             []string
	Status                     string // in-use, available, ...
	Description, InterfaceType string
	RequesterManaged           bool
}

// EC2ENISource is another stand-in that owns ENIs (the ECS stand-in: one per awsvpc task).
type EC2ENISource interface {
	NetworkInterfaces() []EC2NetworkInterface
}

// EC2SecurityGroup is a security group with its rules.
type EC2SecurityGroup struct {
	ID, VPCID, Name string
	Ingress, Egress []EC2Rule
}

// EC2Rule is one permission: Protocol "tcp", "udp" or "-1" (all, ports ignored), a port range,
// and its sources (ingress) or destinations (egress).
type EC2Rule struct {
	Protocol         string
	FromPort, ToPort int32
	CIDRs            []string
	Groups           []string // security group ids
}

// EC2Subnet is a subnet.
type EC2Subnet struct {
	ID, VPCID, CIDR, AZ string
	AvailableIPs        int32 // availableIpAddressCount
	MapPublicIP         bool
}

// EC2RouteTable is a route table with its associations.
type EC2RouteTable struct {
	ID, VPCID string
	Main      bool     // the VPC's main route table (routes subnets without an explicit association)
	Subnets   []string // explicitly associated subnets
	Routes    []EC2Route
}

// EC2Route is one route; exactly one target is set.
type EC2Route struct {
	Destination  string // CIDR, e.g. 0.0.0.0/0
	GatewayID    string // igw-..., vgw-... or "local"
	NatGatewayID string
}

// EC2VPCEndpoint is a VPC endpoint.
type EC2VPCEndpoint struct {
	ID, VPCID   string
	Service     string // com.amazonaws.<region>.<service>, e.g. com.amazonaws.us-east-2.ecr.dkr
	Type        string // Interface or Gateway
	RouteTables []string
	PrivateDNS  bool
	State       string // available (default)
}

// NewEC2 starts the stand-in on a random 127.0.0.1 port. Close it when done.
func NewEC2() *EC2 {
	e := &EC2{groups: map[string]EC2SecurityGroup{}, subnets: map[string]EC2Subnet{},
		denied: map[string]bool{}, calls: map[string]int{}}
	e.srv = httptest.NewServer(e.Handler())
	return e
}

// URL is the endpoint to put in AWS_ENDPOINT_URL_EC2.
func (e *EC2) URL() string { return e.srv.URL }

// Close stops the server.
func (e *EC2) Close() { e.srv.Close() }

// PutSecurityGroup creates or replaces a security group.
func (e *EC2) PutSecurityGroup(g EC2SecurityGroup) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.groups[g.ID] = g
}

// SecurityGroup returns a copy of security group id (its rules' slices too).
func (e *EC2) SecurityGroup(id string) (EC2SecurityGroup, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	g, ok := e.groups[id]
	if !ok {
		return g, false
	}
	g.Ingress = append([]EC2Rule(nil), g.Ingress...)
	g.Egress = append([]EC2Rule(nil), g.Egress...)
	return g, true
}

// PutSubnet creates or replaces a subnet.
func (e *EC2) PutSubnet(s EC2Subnet) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.subnets[s.ID] = s
}

// PutRouteTable creates or replaces (by ID) a route table.
func (e *EC2) PutRouteTable(rt EC2RouteTable) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.routeTables = slices.DeleteFunc(e.routeTables, func(o EC2RouteTable) bool { return o.ID == rt.ID })
	e.routeTables = append(e.routeTables, rt)
}

// PutVPCEndpoint creates or replaces (by ID) a VPC endpoint.
func (e *EC2) PutVPCEndpoint(ep EC2VPCEndpoint) {
	if ep.State == "" {
		ep.State = "available"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.endpoints = slices.DeleteFunc(e.endpoints, func(o EC2VPCEndpoint) bool { return o.ID == ep.ID })
	e.endpoints = append(e.endpoints, ep)
}

// AddENISource makes DescribeNetworkInterfaces serve src's ENIs.
func (e *EC2) AddENISource(src EC2ENISource) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.eniSources = append(e.eniSources, src)
}

// Deny makes every call of op (e.g. "DescribeSubnets") fail with UnauthorizedOperation.
func (e *EC2) Deny(op string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.denied[op] = true
}

// Calls returns how many requests named op were received.
func (e *EC2) Calls(op string) int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.calls[op]
}

// ec2Namespace is the XML namespace of EC2 API version 2016-11-15, the one the SDK speaks.
const ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

type ec2Error struct {
	status        int
	code, message string
}

// Handler is the protocol handler.
func (e *EC2) Handler() http.Handler { return http.HandlerFunc(e.serve) }

func (e *EC2) serve(w http.ResponseWriter, r *http.Request) {
	form, action, ok := queryRequest(w, r, "2016-11-15", writeEC2Error)
	if !ok {
		return
	}
	e.mu.Lock()
	e.calls[action]++
	var out any
	var eerr *ec2Error
	switch {
	case e.denied[action]:
		eerr = &ec2Error{status: http.StatusForbidden, code: "UnauthorizedOperation",
			message: fmt.Sprintf("You are not authorized to perform this operation. User: %s is not authorized to perform: ec2:%s because no identity-based policy allows the ec2:%s action",
				awsPrincipal, action, action)}
	case action == "DescribeSecurityGroups":
		out, eerr = e.describeSecurityGroups(form)
	case action == "DescribeSubnets":
		out, eerr = e.describeSubnets(form)
	case action == "DescribeRouteTables":
		out, eerr = e.describeRouteTables(form)
	case action == "DescribeVpcEndpoints":
		out, eerr = e.describeVpcEndpoints(form)
	case action == "DescribeNetworkInterfaces":
		out, eerr = e.describeNetworkInterfaces(form)
	default:
		eerr = &ec2Error{status: http.StatusBadRequest, code: "InvalidAction", message: "The action " + action + " is not valid for this web service."}
	}
	e.mu.Unlock()
	if eerr != nil {
		writeEC2Error(w, eerr)
		return
	}
	writeXML(w, out)
}

// queryRequest checks a query-protocol request (POST / with a form body naming Action and
// Version) and returns its form and action; on a bad request it answers with writeErr.
func queryRequest[E any](w http.ResponseWriter, r *http.Request, version string, writeErr func(http.ResponseWriter, *E)) (url.Values, string, bool) {
	mk := func(code, msg string) *E {
		var e E
		switch p := any(&e).(type) {
		case *ec2Error:
			*p = ec2Error{status: http.StatusBadRequest, code: code, message: msg}
		case *iamError:
			*p = iamError{status: http.StatusBadRequest, code: code, message: msg}
		}
		return &e
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); r.Method != http.MethodPost || mt != "application/x-www-form-urlencoded" {
		writeErr(w, mk("InvalidRequest", "expected POST with Content-Type application/x-www-form-urlencoded"))
		return nil, "", false
	}
	if err := r.ParseForm(); err != nil {
		writeErr(w, mk("MalformedQueryString", err.Error()))
		return nil, "", false
	}
	if v := r.PostForm.Get("Version"); v != version {
		writeErr(w, mk("InvalidParameterValue", fmt.Sprintf("unsupported Version %q, want %s", v, version)))
		return nil, "", false
	}
	return r.PostForm, r.PostForm.Get("Action"), true
}

func writeEC2Error(w http.ResponseWriter, e *ec2Error) {
	type errXML struct {
		XMLName   xml.Name `xml:"Response"`
		Code      string   `xml:"Errors>Error>Code"`
		Message   string   `xml:"Errors>Error>Message"`
		RequestID string   `xml:"RequestID"`
	}
	b, _ := xml.Marshal(errXML{Code: e.code, Message: e.message, RequestID: "00000000-0000-4000-8000-000000000000"})
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(e.status)
	_, _ = w.Write(append([]byte(xml.Header), b...))
}

func writeXML(w http.ResponseWriter, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	_, _ = w.Write(append([]byte(xml.Header), b...))
}

// formList reads the flattened list name.1, name.2, ... in order.
func formList(form url.Values, name string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[name+"."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v...)
	}
}

// ec2Filters reads Filter.N.Name / Filter.N.Value.M into name -> values.
func ec2Filters(form url.Values) map[string][]string {
	out := map[string][]string{}
	for i := 1; ; i++ {
		p := "Filter." + strconv.Itoa(i)
		name := form.Get(p + ".Name")
		if name == "" {
			return out
		}
		out[name] = append(out[name], formList(form, p+".Value")...)
	}
}

// matches reports whether v passes the filter values (no filter passes everything).
func matches(filters map[string][]string, name, v string) bool {
	vals, ok := filters[name]
	return !ok || slices.Contains(vals, v)
}

type ec2IDItem struct {
	GroupID string `xml:"groupId,omitempty"`
	CIDR    string `xml:"cidrIp,omitempty"`
}

type ec2PermXML struct {
	Protocol string      `xml:"ipProtocol"`
	FromPort *int32      `xml:"fromPort,omitempty"`
	ToPort   *int32      `xml:"toPort,omitempty"`
	Groups   []ec2IDItem `xml:"groups>item"`
	Ranges   []ec2IDItem `xml:"ipRanges>item"`
}

func ec2Perms(rules []EC2Rule) []ec2PermXML {
	out := []ec2PermXML{}
	for _, r := range rules {
		p := ec2PermXML{Protocol: r.Protocol}
		if r.Protocol != "-1" {
			from, to := r.FromPort, r.ToPort
			p.FromPort, p.ToPort = &from, &to
		}
		for _, g := range r.Groups {
			p.Groups = append(p.Groups, ec2IDItem{GroupID: g})
		}
		for _, c := range r.CIDRs {
			p.Ranges = append(p.Ranges, ec2IDItem{CIDR: c})
		}
		out = append(out, p)
	}
	return out
}

func (e *EC2) describeSecurityGroups(form url.Values) (any, *ec2Error) {
	type sgXML struct {
		GroupID     string       `xml:"groupId"`
		GroupName   string       `xml:"groupName"`
		Description string       `xml:"groupDescription"`
		VPCID       string       `xml:"vpcId"`
		OwnerID     string       `xml:"ownerId"`
		Ingress     []ec2PermXML `xml:"ipPermissions>item"`
		Egress      []ec2PermXML `xml:"ipPermissionsEgress>item"`
	}
	type resp struct {
		XMLName   xml.Name `xml:"DescribeSecurityGroupsResponse"`
		NS        string   `xml:"xmlns,attr"`
		RequestID string   `xml:"requestId"`
		Groups    []sgXML  `xml:"securityGroupInfo>item"`
	}
	ids := formList(form, "GroupId")
	if len(ids) == 0 {
		for id := range e.groups {
			ids = append(ids, id)
		}
		sort.Strings(ids)
	}
	out := resp{NS: ec2Namespace, RequestID: "00000000-0000-4000-8000-000000000000"}
	for _, id := range ids {
		g, ok := e.groups[id]
		if !ok {
			return nil, &ec2Error{status: http.StatusBadRequest, code: "InvalidGroup.NotFound", message: fmt.Sprintf("The security group '%s' does not exist", id)}
		}
		out.Groups = append(out.Groups, sgXML{GroupID: g.ID, GroupName: g.Name, Description: g.Name, VPCID: g.VPCID, OwnerID: awsAccount,
			Ingress: ec2Perms(g.Ingress), Egress: ec2Perms(g.Egress)})
	}
	return out, nil
}

func (e *EC2) describeSubnets(form url.Values) (any, *ec2Error) {
	type subnetXML struct {
		SubnetID     string `xml:"subnetId"`
		State        string `xml:"state"`
		VPCID        string `xml:"vpcId"`
		CIDR         string `xml:"cidrBlock"`
		AvailableIPs int32  `xml:"availableIpAddressCount"`
		AZ           string `xml:"availabilityZone"`
		MapPublicIP  bool   `xml:"mapPublicIpOnLaunch"`
		OwnerID      string `xml:"ownerId"`
	}
	type resp struct {
		XMLName   xml.Name    `xml:"DescribeSubnetsResponse"`
		NS        string      `xml:"xmlns,attr"`
		RequestID string      `xml:"requestId"`
		Subnets   []subnetXML `xml:"subnetSet>item"`
	}
	out := resp{NS: ec2Namespace, RequestID: "00000000-0000-4000-8000-000000000000"}
	for _, id := range formList(form, "SubnetId") {
		s, ok := e.subnets[id]
		if !ok {
			return nil, &ec2Error{status: http.StatusBadRequest, code: "InvalidSubnetID.NotFound", message: fmt.Sprintf("The subnet ID '%s' does not exist", id)}
		}
		out.Subnets = append(out.Subnets, subnetXML{SubnetID: s.ID, State: "available", VPCID: s.VPCID, CIDR: s.CIDR,
			AvailableIPs: s.AvailableIPs, AZ: s.AZ, MapPublicIP: s.MapPublicIP, OwnerID: awsAccount})
	}
	return out, nil
}

func (e *EC2) describeRouteTables(form url.Values) (any, *ec2Error) {
	type routeXML struct {
		Destination  string `xml:"destinationCidrBlock"`
		GatewayID    string `xml:"gatewayId,omitempty"`
		NatGatewayID string `xml:"natGatewayId,omitempty"`
		State        string `xml:"state"`
		Origin       string `xml:"origin"`
	}
	type assocXML struct {
		ID           string `xml:"routeTableAssociationId"`
		RouteTableID string `xml:"routeTableId"`
		SubnetID     string `xml:"subnetId,omitempty"`
		Main         bool   `xml:"main"`
	}
	type rtXML struct {
		ID     string     `xml:"routeTableId"`
		VPCID  string     `xml:"vpcId"`
		Owner  string     `xml:"ownerId"`
		Routes []routeXML `xml:"routeSet>item"`
		Assocs []assocXML `xml:"associationSet>item"`
	}
	type resp struct {
		XMLName   xml.Name `xml:"DescribeRouteTablesResponse"`
		NS        string   `xml:"xmlns,attr"`
		RequestID string   `xml:"requestId"`
		Tables    []rtXML  `xml:"routeTableSet>item"`
	}
	f := ec2Filters(form)
	out := resp{NS: ec2Namespace, RequestID: "00000000-0000-4000-8000-000000000000"}
	for _, rt := range e.routeTables {
		if !matches(f, "vpc-id", rt.VPCID) || !matches(f, "association.main", strconv.FormatBool(rt.Main)) {
			continue
		}
		if want, ok := f["association.subnet-id"]; ok && !slices.ContainsFunc(rt.Subnets, func(s string) bool { return slices.Contains(want, s) }) {
			continue
		}
		x := rtXML{ID: rt.ID, VPCID: rt.VPCID, Owner: awsAccount}
		for _, r := range rt.Routes {
			origin := "CreateRoute"
			if r.GatewayID == "local" {
				origin = "CreateRouteTable"
			}
			x.Routes = append(x.Routes, routeXML{Destination: r.Destination, GatewayID: r.GatewayID, NatGatewayID: r.NatGatewayID, State: "active", Origin: origin})
		}
		if rt.Main {
			x.Assocs = append(x.Assocs, assocXML{ID: "rtbassoc-main" + rt.ID[4:], RouteTableID: rt.ID, Main: true})
		}
		for i, s := range rt.Subnets {
			x.Assocs = append(x.Assocs, assocXML{ID: fmt.Sprintf("rtbassoc-%d%s", i, rt.ID[4:]), RouteTableID: rt.ID, SubnetID: s})
		}
		out.Tables = append(out.Tables, x)
	}
	return out, nil
}

func (e *EC2) describeVpcEndpoints(form url.Values) (any, *ec2Error) {
	type epXML struct {
		ID          string   `xml:"vpcEndpointId"`
		Type        string   `xml:"vpcEndpointType"`
		VPCID       string   `xml:"vpcId"`
		Service     string   `xml:"serviceName"`
		State       string   `xml:"state"`
		RouteTables []string `xml:"routeTableIdSet>item"`
		PrivateDNS  bool     `xml:"privateDnsEnabled"`
		Owner       string   `xml:"ownerId"`
	}
	type resp struct {
		XMLName   xml.Name `xml:"DescribeVpcEndpointsResponse"`
		NS        string   `xml:"xmlns,attr"`
		RequestID string   `xml:"requestId"`
		Endpoints []epXML  `xml:"vpcEndpointSet>item"`
	}
	f := ec2Filters(form)
	out := resp{NS: ec2Namespace, RequestID: "00000000-0000-4000-8000-000000000000"}
	for _, ep := range e.endpoints {
		if !matches(f, "vpc-id", ep.VPCID) {
			continue
		}
		out.Endpoints = append(out.Endpoints, epXML{ID: ep.ID, Type: ep.Type, VPCID: ep.VPCID, Service: ep.Service, State: ep.State,
			RouteTables: ep.RouteTables, PrivateDNS: ep.PrivateDNS, Owner: awsAccount})
	}
	return out, nil
}

var eniIDPattern = regexp.MustCompile(`^eni-[0-9a-f]{8}([0-9a-f]{9})?$`)

func (e *EC2) describeNetworkInterfaces(form url.Values) (any, *ec2Error) {
	type groupXML struct {
		ID   string `xml:"groupId"`
		Name string `xml:"groupName"`
	}
	type assocXML struct {
		PublicIP  string `xml:"publicIp"`
		PublicDNS string `xml:"publicDnsName,omitempty"`
		Owner     string `xml:"ipOwnerId"`
	}
	type privXML struct {
		IP      string    `xml:"privateIpAddress"`
		DNS     string    `xml:"privateDnsName"`
		Primary bool      `xml:"primary"`
		Assoc   *assocXML `xml:"association,omitempty"`
	}
	type eniXML struct {
		ID               string     `xml:"networkInterfaceId"`
		SubnetID         string     `xml:"subnetId"`
		VPCID            string     `xml:"vpcId,omitempty"`
		AZ               string     `xml:"availabilityZone,omitempty"`
		Description      string     `xml:"description"`
		OwnerID          string     `xml:"ownerId"`
		RequesterManaged bool       `xml:"requesterManaged"`
		Status           string     `xml:"status"`
		MAC              string     `xml:"macAddress"`
		PrivateIP        string     `xml:"privateIpAddress"`
		PrivateDNS       string     `xml:"privateDnsName"`
		SourceDestCheck  bool       `xml:"sourceDestCheck"`
		Groups           []groupXML `xml:"groupSet>item"`
		Assoc            *assocXML  `xml:"association,omitempty"`
		Privates         []privXML  `xml:"privateIpAddressesSet>item"`
		InterfaceType    string     `xml:"interfaceType"`
	}
	type resp struct {
		XMLName   xml.Name `xml:"DescribeNetworkInterfacesResponse"`
		NS        string   `xml:"xmlns,attr"`
		RequestID string   `xml:"requestId"`
		ENIs      []eniXML `xml:"networkInterfaceSet>item"`
	}
	all := map[string]EC2NetworkInterface{}
	var order []string
	for _, src := range e.eniSources {
		for _, n := range src.NetworkInterfaces() {
			all[n.ID] = n
			order = append(order, n.ID)
		}
	}
	ids := formList(form, "NetworkInterfaceId")
	for _, id := range ids {
		if !eniIDPattern.MatchString(id) {
			return nil, &ec2Error{status: http.StatusBadRequest, code: "InvalidNetworkInterfaceID.Malformed",
				message: fmt.Sprintf("Invalid id: \"%s\" (expecting \"eni-...\")", id)}
		}
		if _, ok := all[id]; !ok {
			return nil, &ec2Error{status: http.StatusBadRequest, code: "InvalidNetworkInterfaceID.NotFound",
				message: fmt.Sprintf("The networkInterface ID '%s' does not exist", id)}
		}
	}
	if len(ids) == 0 {
		ids = order
	}
	out := resp{NS: ec2Namespace, RequestID: "00000000-0000-4000-8000-000000000000"}
	for _, id := range ids {
		n := all[id]
		x := eniXML{ID: n.ID, SubnetID: n.SubnetID, Description: n.Description, OwnerID: awsAccount,
			RequesterManaged: n.RequesterManaged, Status: n.Status, MAC: n.MAC, PrivateIP: n.PrivateIP,
			PrivateDNS: n.PrivateDNS, SourceDestCheck: true, InterfaceType: n.InterfaceType}
		if s, ok := e.subnets[n.SubnetID]; ok {
			x.VPCID, x.AZ = s.VPCID, s.AZ
		}
		for _, g := range n.SecurityGroups {
			x.Groups = append(x.Groups, groupXML{ID: g, Name: e.groups[g].Name})
		}
		if n.PublicIP != "" {
			x.Assoc = &assocXML{PublicIP: n.PublicIP, Owner: "amazon"}
		}
		x.Privates = []privXML{{IP: n.PrivateIP, DNS: n.PrivateDNS, Primary: true, Assoc: x.Assoc}}
		out.ENIs = append(out.ENIs, x)
	}
	return out, nil
}
