package testenv

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"time"
)

// SSM account and principal that the stand-in pretends to be, as they appear in ARNs and in
// AccessDeniedException messages.
const (
	ssmAccount   = "123456789012"
	ssmPrincipal = "arn:aws:sts::123456789012:assumed-role/front/i-0"
	ssmRegion    = "us-east-2" // when the request's SigV4 scope does not name one
)

// ssmKMSDeniedMessage is what SSM answers (as AccessDeniedException) when GetParameter with
// WithDecryption=true hits a KMS key the caller may not use. SSM forwards KMS's message with the
// Java SDK's service suffix; seen in the wild with both "customer master key" and newer wordings.
const ssmKMSDeniedMessage = "The ciphertext refers to a customer master key that does not exist, " +
	"does not exist in this region, or you are not allowed to access. " +
	"(Service: AWSKMS; Status Code: 400; Error Code: AccessDeniedException; " +
	"Request ID: 6f1c2a4e-2b5e-4c1b-9b8e-0d4a7f3e9c10; Proxy: null)"

// SSM is an in-process stand-in for AWS Systems Manager Parameter Store that speaks the awsJson1_1
// protocol (POST /, X-Amz-Target: AmazonSSM.<Op>, Content-Type application/x-amz-json-1.1), so the
// real aws-sdk-go-v2 SSM client can be pointed at it with AWS_ENDPOINT_URL_SSM=URL().
//
// Operations: GetParameter, GetParameters, PutParameter, DeleteParameter. Errors are HTTP 400
// with {"__type": code, "message"|"Message": text}, as SSM sends them. Anything else answers
// UnknownOperationException. Safe for concurrent use.
type SSM struct {
	srv *httptest.Server

	mu     sync.Mutex
	params map[string]*ssmParam
	calls  map[string]int
}

type ssmParam struct {
	value       string
	typ         string // String, StringList, SecureString; empty for a placeholder made by a Deny*
	version     int64  // 0 for a placeholder: reads as not found
	modified    time.Time
	denyDecrypt bool
	denyRead    bool
	// history is every value the parameter has held, oldest first, for Secrets.
	history []string
	// secret is set by MarkSecret.
	secret bool
}

// NewSSM starts the stand-in on a random 127.0.0.1 port. Close it when done.
func NewSSM() *SSM {
	s := &SSM{params: map[string]*ssmParam{}, calls: map[string]int{}}
	s.srv = httptest.NewServer(s.Handler())
	return s
}

// URL is the endpoint to put in AWS_ENDPOINT_URL_SSM, e.g. http://127.0.0.1:41234.
func (s *SSM) URL() string { return s.srv.URL }

// Close stops the server.
func (s *SSM) Close() { s.srv.Close() }

// Put creates or replaces a parameter as String (secure false) or SecureString (secure true),
// bumping its version like an overwriting PutParameter. Deny marks are kept.
func (s *SSM) Put(name, value string, secure bool) {
	typ := "String"
	if secure {
		typ = "SecureString"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(name, value, typ)
}

func (s *SSM) putLocked(name, value, typ string) *ssmParam {
	p, ok := s.params[name]
	if !ok {
		p = &ssmParam{}
		s.params[name] = p
	}
	p.value, p.typ = value, typ
	p.history = append(p.history, value)
	p.version++
	p.modified = time.Now()
	return p
}

// DenyDecrypt makes GetParameter/GetParameters with WithDecryption=true on name fail with the
// AccessDeniedException SSM relays from KMS, as when the instance profile lacks kms:Decrypt.
// Reads without decryption still succeed. The parameter need not exist yet.
func (s *SSM) DenyDecrypt(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markLocked(name).denyDecrypt = true
}

// DenyRead makes every read of name fail with the IAM AccessDeniedException for
// ssm:GetParameter(s), as when the instance profile has no policy allowing it.
func (s *SSM) DenyRead(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markLocked(name).denyRead = true
}

// AllowRead undoes DenyRead.
func (s *SSM) AllowRead(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.markLocked(name).denyRead = false
}

// markLocked returns the parameter, creating a placeholder (version 0, no type) that reads as
// "not found" until it is Put, so deny marks can precede the value.
func (s *SSM) markLocked(name string) *ssmParam {
	p, ok := s.params[name]
	if !ok {
		p = &ssmParam{}
		s.params[name] = p
	}
	return p
}

// MarkSecret declares that the named parameters hold secrets (tokens, passwords): Secrets then
// returns every value they hold or have held, including values put before the mark and by
// PutParameter. The parameters need not exist yet.
func (s *SSM) MarkSecret(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.markLocked(n).secret = true
	}
}

// Secrets returns every value that a parameter marked with MarkSecret holds or has held, each
// with "SSM <name>" as its source, in no particular order.
func (s *SSM) Secrets() []Secret {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Secret
	for name, p := range s.params {
		if !p.secret {
			continue
		}
		for _, v := range p.history {
			out = append(out, Secret{Source: "SSM " + name, Value: v})
		}
	}
	return out
}

// Value returns a parameter's plaintext value and whether it exists.
func (s *SSM) Value(name string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.params[name]
	if !ok || p.version == 0 {
		return "", false
	}
	return p.value, true
}

// Calls returns how many requests named op ("GetParameter", "PutParameter", ...) were received,
// including failed ones.
func (s *SSM) Calls(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Handler is the protocol handler, for mounting the stand-in in another server.
func (s *SSM) Handler() http.Handler { return http.HandlerFunc(s.serve) }

func (s *SSM) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		writeAWSJSONError(w, &awsJSONError{status: http.StatusNotFound, code: "UnknownOperationException", message: "expected POST /"})
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-amz-json-1.1" {
		writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "SerializationException",
			message: "expected Content-Type application/x-amz-json-1.1, got " + r.Header.Get("Content-Type")})
		return
	}
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "AmazonSSM.")
	if !ok {
		writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "UnknownOperationException"})
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "SerializationException", message: err.Error()})
		return
	}
	region := ssmSigV4Region(r.Header.Get("Authorization"))

	s.mu.Lock()
	s.calls[op]++
	var out any
	var serr *awsJSONError
	switch op {
	case "GetParameter":
		out, serr = s.getParameter(body, region)
	case "GetParameters":
		out, serr = s.getParameters(body, region)
	case "PutParameter":
		out, serr = s.putParameter(body)
	case "DeleteParameter":
		out, serr = s.deleteParameter(body)
	default:
		serr = &awsJSONError{status: http.StatusBadRequest, code: "UnknownOperationException"}
	}
	s.mu.Unlock()

	if serr != nil {
		writeAWSJSONError(w, serr)
		return
	}
	writeAWSJSON(w, out)
}

var ssmSigV4RegionRE = regexp.MustCompile(`Credential=[^/]+/\d{8}/([a-z0-9-]+)/ssm/aws4_request`)

// ssmSigV4Region reads the region from the SigV4 credential scope, so ARNs in answers name the
// region the client asked for.
func ssmSigV4Region(auth string) string {
	if m := ssmSigV4RegionRE.FindStringSubmatch(auth); m != nil {
		return m[1]
	}
	return ssmRegion
}

func ssmARN(region, name string) string {
	if !strings.HasPrefix(name, "/") {
		name = "/" + name
	}
	return "arn:aws:ssm:" + region + ":" + ssmAccount + ":parameter" + name
}

func ssmReadDenied(action, region, name string) *awsJSONError {
	return &awsJSONError{status: http.StatusBadRequest, code: "AccessDeniedException", upper: true,
		message: fmt.Sprintf("User: %s is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action",
			ssmPrincipal, action, ssmARN(region, name), action)}
}

// ssmParameterJSON is types.Parameter on the wire. LastModifiedDate is epoch seconds, as awsJson
// encodes timestamps.
type ssmParameterJSON struct {
	ARN              string  `json:"ARN"`
	DataType         string  `json:"DataType"`
	LastModifiedDate float64 `json:"LastModifiedDate"`
	Name             string  `json:"Name"`
	Type             string  `json:"Type"`
	Value            string  `json:"Value"`
	Version          int64   `json:"Version"`
}

// ssmCiphertextPlaceholder stands for the base64 KMS ciphertext blob SSM returns for a SecureString
// read without decryption. It is derived from the value but does not reveal it.
func ssmCiphertextPlaceholder(name string, p *ssmParam) string {
	sum := sha256.Sum256([]byte(fmt.Sprintf("%s\x00%d\x00%s", name, p.version, p.value)))
	return "AQICAHh" + base64.StdEncoding.EncodeToString(append([]byte("glbootstrap-testenv-kms:"), sum[:]...))
}

// readLocked applies the deny marks and the decryption rule shared by GetParameter(s).
// found is false when the parameter does not exist.
func (s *SSM) readLocked(action, region, name string, decrypt bool) (out *ssmParameterJSON, found bool, serr *awsJSONError) {
	p, ok := s.params[name]
	if ok && p.denyRead {
		return nil, true, ssmReadDenied(action, region, name)
	}
	if !ok || p.version == 0 {
		return nil, false, nil
	}
	value := p.value
	if p.typ == "SecureString" {
		if decrypt && p.denyDecrypt {
			return nil, true, &awsJSONError{status: http.StatusBadRequest, code: "AccessDeniedException", upper: true, message: ssmKMSDeniedMessage}
		}
		if !decrypt {
			value = ssmCiphertextPlaceholder(name, p)
		}
	}
	return &ssmParameterJSON{
		ARN:              ssmARN(region, name),
		DataType:         "text",
		LastModifiedDate: float64(p.modified.UnixMilli()) / 1000,
		Name:             name,
		Type:             p.typ,
		Value:            value,
		Version:          p.version,
	}, true, nil
}

func decodeSSM(body []byte, v any) *awsJSONError {
	if err := json.Unmarshal(body, v); err != nil {
		return &awsJSONError{status: http.StatusBadRequest, code: "SerializationException", message: err.Error()}
	}
	return nil
}

func ssmValidation(msg string) *awsJSONError {
	return &awsJSONError{status: http.StatusBadRequest, code: "ValidationException", message: msg}
}

func (s *SSM) getParameter(body []byte, region string) (any, *awsJSONError) {
	var in struct {
		Name           string
		WithDecryption bool
	}
	if e := decodeSSM(body, &in); e != nil {
		return nil, e
	}
	if in.Name == "" {
		return nil, ssmValidation("1 validation error detected: Value null at 'name' failed to satisfy constraint: Member must not be null")
	}
	p, found, serr := s.readLocked("ssm:GetParameter", region, in.Name, in.WithDecryption)
	if serr != nil {
		return nil, serr
	}
	if !found {
		// SSM sends no message text for ParameterNotFound on GetParameter.
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "ParameterNotFound"}
	}
	return map[string]any{"Parameter": p}, nil
}

func (s *SSM) getParameters(body []byte, region string) (any, *awsJSONError) {
	var in struct {
		Names          []string
		WithDecryption bool
	}
	if e := decodeSSM(body, &in); e != nil {
		return nil, e
	}
	if len(in.Names) == 0 || len(in.Names) > 10 {
		return nil, ssmValidation("1 validation error detected: Value at 'names' failed to satisfy constraint: Member must have length less than or equal to 10 and greater than or equal to 1")
	}
	params := []*ssmParameterJSON{}
	invalid := []string{}
	for _, name := range in.Names {
		p, found, serr := s.readLocked("ssm:GetParameters", region, name, in.WithDecryption)
		if serr != nil {
			// One denied name fails the whole call, as IAM evaluates every resource.
			return nil, serr
		}
		if !found {
			invalid = append(invalid, name)
			continue
		}
		params = append(params, p)
	}
	return map[string]any{"Parameters": params, "InvalidParameters": invalid}, nil
}

func (s *SSM) putParameter(body []byte) (any, *awsJSONError) {
	var in struct {
		Name      string
		Value     *string
		Type      string
		Overwrite bool
	}
	if e := decodeSSM(body, &in); e != nil {
		return nil, e
	}
	if in.Name == "" || in.Value == nil {
		return nil, ssmValidation("1 validation error detected: Value null at 'name' or 'value' failed to satisfy constraint: Member must not be null")
	}
	if *in.Value == "" {
		return nil, ssmValidation("1 validation error detected: Value '' at 'value' failed to satisfy constraint: Member must have length greater than or equal to 1")
	}
	switch in.Type {
	case "", "String", "StringList", "SecureString":
	default:
		return nil, ssmValidation(fmt.Sprintf("1 validation error detected: Value '%s' at 'type' failed to satisfy constraint: Member must satisfy enum value set: [SecureString, StringList, String]", in.Type))
	}
	p, exists := s.params[in.Name]
	exists = exists && p.version > 0
	if exists && !in.Overwrite {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "ParameterAlreadyExists",
			message: "The parameter already exists. To overwrite this value, set the overwrite option in the request to true."}
	}
	typ := in.Type
	if typ == "" {
		if !exists {
			return nil, ssmValidation("A parameter type is required when you create a parameter.")
		}
		typ = p.typ
	}
	p = s.putLocked(in.Name, *in.Value, typ)
	return map[string]any{"Tier": "Standard", "Version": p.version}, nil
}

func (s *SSM) deleteParameter(body []byte) (any, *awsJSONError) {
	var in struct{ Name string }
	if e := decodeSSM(body, &in); e != nil {
		return nil, e
	}
	p, ok := s.params[in.Name]
	if !ok || p.version == 0 {
		return nil, &awsJSONError{status: http.StatusBadRequest, code: "ParameterNotFound"}
	}
	s.deleteLocked(in.Name)
	return map[string]any{}, nil
}

// deleteLocked removes a parameter; one marked secret stays marked, with its history.
func (s *SSM) deleteLocked(name string) {
	if p, ok := s.params[name]; ok && p.secret {
		s.params[name] = &ssmParam{secret: true, history: p.history}
		return
	}
	delete(s.params, name)
}
