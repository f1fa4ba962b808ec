package runner

import (
	"os"
	"testing"
)

// BenchmarkParseExample parses and validates the commented reference
// config (examples/runner.yaml), which every apply does once.
func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile("../../examples/runner.yaml")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, ps := parseDoc(data, Name); ps.Err() != nil {
			b.Fatal(ps.Err())
		}
	}
}
