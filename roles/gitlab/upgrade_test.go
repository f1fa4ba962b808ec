package gitlab

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestUpgradePath(t *testing.T) {
	tests := []struct {
		from, to  string
		stops     []string
		downgrade bool
	}{
		{from: "18.5.1", to: "18.5.1"},           // nothing to do
		{from: "18.5.1", to: "18.5.2"},           // a patch release: no stop
		{from: "18.5.1-ee.0", to: "18.5.2-ee.0"}, // package versions
		{from: "18.5.1", to: "18.8.3"},           // from a stop to the next one
		{from: "18.3.0", to: "18.5.4"},           // up to a stop
		{from: "18.6.1", to: "18.8.0"},           // between stops
		{from: "17.11.6", to: "18.2.1"},          // across a major, from the last stop of 17
		{from: "18.3.0", to: "18.6.0", stops: []string{"18.5"}},
		{from: "18.1.2", to: "18.9.0", stops: []string{"18.2", "18.5", "18.8"}},
		{from: "17.9.1", to: "18.1.0", stops: []string{"17.11"}},
		{from: "16.5.0", to: "17.6.0", stops: []string{"16.7", "16.11", "17.3", "17.5"}},
		{from: "19.2.3", to: "19.5.1"},                                                   // the schedule after the table
		{from: "19.3.0", to: "20.3.0", stops: []string{"19.5", "19.8", "19.11", "20.2"}}, // past the table: x.2, x.5, x.8, x.11
		{from: "18.5.2", to: "18.5.1", downgrade: true},
		{from: "18.5.1", to: "18.2.9", downgrade: true},
	}
	for _, tc := range tests {
		err := UpgradePath(tc.from, tc.to)
		var ue *UpgradeError
		switch {
		case tc.stops == nil && !tc.downgrade:
			if err != nil {
				t.Errorf("%s -> %s: %v, want allowed", tc.from, tc.to, err)
			}
		case !errors.As(err, &ue):
			t.Errorf("%s -> %s: %v, want an UpgradeError", tc.from, tc.to, err)
		case ue.Downgrade != tc.downgrade || !reflect.DeepEqual(ue.Stops, tc.stops):
			t.Errorf("%s -> %s: stops %v downgrade %v, want %v %v", tc.from, tc.to, ue.Stops, ue.Downgrade, tc.stops, tc.downgrade)
		}
	}
	err := UpgradePath("18.1.2", "18.9.0")
	want := "upgrade to 18.2.x (its latest patch release), then 18.5.x (its latest patch release), then 18.8.x (its latest patch release), then 18.9.0"
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), UpgradePathsURL) {
		t.Errorf("message %q lacks the path %q or the source", err, want)
	}
	if err := UpgradePath("18.5", "18.6.0"); err == nil {
		t.Error("a version without a patch number was accepted")
	}
}
