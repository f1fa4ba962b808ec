package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Logs is an in-process stand-in for CloudWatch Logs' GetLogEvents over awsJson1_1
// (X-Amz-Target: Logs_20140328.GetLogEvents), for the real SDK client pointed at it with
// AWS_ENDPOINT_URL_CLOUDWATCH_LOGS=URL(). Pages hold at most PageSize events, so a reader must
// follow nextForwardToken; at the end of a stream the same token comes back, as CloudWatch does.
type Logs struct {
	srv *httptest.Server

	mu       sync.Mutex
	streams  map[string][]logEvent // group + "\x00" + stream
	pageSize int
	calls    map[string]int
	throttle int
}

type logEvent struct {
	at  time.Time
	msg string
}

// NewLogs starts the stand-in with pages of pageSize events (0 means 10,000, CloudWatch's
// maximum). Close it when done.
func NewLogs(pageSize int) *Logs {
	if pageSize <= 0 {
		pageSize = 10000
	}
	l := &Logs{streams: map[string][]logEvent{}, pageSize: pageSize, calls: map[string]int{}}
	l.srv = httptest.NewServer(http.HandlerFunc(l.serve))
	return l
}

// URL is the endpoint for AWS_ENDPOINT_URL_CLOUDWATCH_LOGS.
func (l *Logs) URL() string { return l.srv.URL }

// Close stops the server.
func (l *Logs) Close() { l.srv.Close() }

// Append writes lines to group/stream, creating the stream.
func (l *Logs) Append(group, stream string, lines ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := group + "\x00" + stream
	if _, ok := l.streams[k]; !ok {
		l.streams[k] = []logEvent{}
	}
	for _, s := range lines {
		l.streams[k] = append(l.streams[k], logEvent{at: time.Now(), msg: s + "\n"})
	}
}

// Throttle makes the next n GetLogEvents calls answer ThrottlingException.
func (l *Logs) Throttle(n int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.throttle += n
}

// Calls returns how many requests named op were received.
func (l *Logs) Calls(op string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[op]
}

func (l *Logs) serve(w http.ResponseWriter, r *http.Request) {
	op, body, aerr := readAWSJSON(r, "Logs_20140328.")
	if aerr != nil {
		writeAWSJSONError(w, aerr)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls[op]++
	if op != "GetLogEvents" {
		writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "UnknownOperationException", message: op})
		return
	}
	if l.throttle > 0 {
		l.throttle--
		writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "ThrottlingException", message: "Rate exceeded"})
		return
	}
	var in struct {
		LogGroupName, LogStreamName, NextToken string
		StartFromHead                          bool
		Limit                                  int
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "SerializationException", message: err.Error()})
		return
	}
	events, ok := l.streams[in.LogGroupName+"\x00"+in.LogStreamName]
	if !ok {
		writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "ResourceNotFoundException", message: "The specified log stream does not exist."})
		return
	}
	from := 0
	if in.NextToken != "" {
		n, err := strconv.Atoi(strings.TrimPrefix(in.NextToken, "f/"))
		if err != nil || !strings.HasPrefix(in.NextToken, "f/") || n > len(events) {
			writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "InvalidParameterException", message: "The specified nextToken is invalid."})
			return
		}
		from = n
	} else if !in.StartFromHead {
		writeAWSJSONError(w, &awsJSONError{status: http.StatusBadRequest, code: "InvalidParameterException", message: "this stand-in reads from the head only"})
		return
	}
	size := l.pageSize
	if in.Limit > 0 && in.Limit < size {
		size = in.Limit
	}
	to := min(from+size, len(events))
	out := []map[string]any{}
	for _, e := range events[from:to] {
		out = append(out, map[string]any{"timestamp": e.at.UnixMilli(), "ingestionTime": e.at.UnixMilli(), "message": e.msg})
	}
	writeAWSJSON(w, map[string]any{"events": out, "nextForwardToken": fmt.Sprintf("f/%d", to), "nextBackwardToken": fmt.Sprintf("b/%d", from)})
}
