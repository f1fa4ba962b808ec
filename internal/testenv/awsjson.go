package testenv

// The awsJson1_1 protocol shared by the SSM, ECS, ECR, CodeBuild and CloudWatch Logs stand-ins
// (https://smithy.io/2.0/aws/protocols/aws-json-1_1-protocol.html).

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"strings"
)

// awsJSONError is an awsJson1_1 error answer: HTTP status and {"__type", "message"}.
type awsJSONError struct {
	status        int
	code, message string
	// upper selects "Message" as the JSON key, the casing AWS's authorization layer uses for
	// AccessDeniedException; modeled errors use "message". The SDK accepts either.
	upper bool
}

// readAWSJSON checks an awsJson1_1 request and returns the operation (the X-Amz-Target after
// prefix) and the body.
func readAWSJSON(r *http.Request, prefix string) (string, []byte, *awsJSONError) {
	if r.Method != http.MethodPost || r.URL.Path != "/" {
		return "", nil, &awsJSONError{status: http.StatusNotFound, code: "UnknownOperationException", message: "expected POST /"}
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-amz-json-1.1" {
		return "", nil, &awsJSONError{status: http.StatusBadRequest, code: "SerializationException", message: "bad Content-Type " + r.Header.Get("Content-Type")}
	}
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), prefix)
	if !ok {
		return "", nil, &awsJSONError{status: http.StatusBadRequest, code: "UnknownOperationException", message: r.Header.Get("X-Amz-Target")}
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return "", nil, &awsJSONError{status: http.StatusBadRequest, code: "SerializationException", message: err.Error()}
	}
	return op, body, nil
}

// writeAWSJSON answers v as an awsJson1_1 body.
func writeAWSJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeAWSJSONError(w, &awsJSONError{status: http.StatusInternalServerError, code: "InternalServerError", message: err.Error()})
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", "00000000-0000-4000-8000-000000000001")
	_, _ = w.Write(b)
}

// writeAWSJSONError answers e.
func writeAWSJSONError(w http.ResponseWriter, e *awsJSONError) {
	key := "message"
	if e.upper {
		key = "Message"
	}
	b, _ := json.Marshal(map[string]string{"__type": e.code, key: e.message})
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-RequestId", "00000000-0000-4000-8000-000000000001")
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}
