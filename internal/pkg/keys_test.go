package pkg

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// colonFingerprints reads gpg --show-keys --with-colons output: for each pub, its fingerprint
// and those of its subs.
func colonFingerprints(t *testing.T, out []byte) []Key {
	t.Helper()
	var keys []Key
	var last string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Split(line, ":")
		switch {
		case len(f) > 9 && f[0] == "fpr" && last == "pub":
			keys = append(keys, Key{Fingerprint: f[9]})
		case len(f) > 9 && f[0] == "fpr" && last == "sub":
			keys[len(keys)-1].Subkeys = append(keys[len(keys)-1].Subkeys, f[9])
		}
		if f[0] == "pub" || f[0] == "sub" {
			last = f[0]
		}
	}
	if len(keys) == 0 {
		t.Fatalf("no fingerprint in gpg's output:\n%s", out)
	}
	return keys
}

// TestParseKeysAgreesWithGPG checks the fingerprints ParseKeys computes against gpg's own, for
// an RSA key with an encryption subkey and an Ed25519 key (made with gpg, testdata/keys), armored
// and binary: the .colons files are gpg --show-keys --with-colons of the same files, and when gpg
// is installed it is asked again so the recorded output cannot drift from gpg's.
func TestParseKeysAgreesWithGPG(t *testing.T) {
	for _, tc := range []struct{ file, colons string }{
		{"testdata/keys/rsa.asc", "testdata/keys/rsa.colons"},
		{"testdata/keys/ed25519.asc", "testdata/keys/ed25519.colons"},
		{"testdata/keys/ed25519.gpg", "testdata/keys/ed25519.colons"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			data, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			recorded, err := os.ReadFile(tc.colons)
			if err != nil {
				t.Fatal(err)
			}
			want := colonFingerprints(t, recorded)
			if _, err := exec.LookPath("gpg"); err == nil {
				out, err := exec.Command("gpg", "--show-keys", "--with-colons", tc.file).Output()
				if err != nil {
					t.Fatalf("gpg --show-keys %s: %v", tc.file, err)
				}
				if live := colonFingerprints(t, out); !slices.EqualFunc(live, want, keyEqual) {
					t.Fatalf("gpg says %+v now, %s recorded %+v", live, tc.colons, want)
				}
			}
			bin, got, err := ParseKeys(data)
			if err != nil {
				t.Fatalf("ParseKeys: %v", err)
			}
			if !slices.EqualFunc(got, want, keyEqual) {
				t.Errorf("ParseKeys = %+v, gpg says %+v", got, want)
			}
			// The binary keyring is what gpg --dearmor makes: parse it again, same keys.
			if _, again, err := ParseKeys(bin); err != nil || !slices.EqualFunc(again, want, keyEqual) {
				t.Errorf("ParseKeys of the dearmored keyring = %+v, %v", again, err)
			}
		})
	}
}

func keyEqual(a, b Key) bool {
	return a.Fingerprint == b.Fingerprint && slices.Equal(a.Subkeys, b.Subkeys)
}

func TestDearmorMatchesBinaryExport(t *testing.T) {
	armored, _ := os.ReadFile("testdata/keys/ed25519.asc")
	binary, _ := os.ReadFile("testdata/keys/ed25519.gpg")
	got, _, err := ParseKeys(armored)
	if err != nil || !bytes.Equal(got, binary) {
		t.Errorf("dearmored %d bytes (%v), gpg --export made %d: want the same bytes", len(got), err, len(binary))
	}
}

func TestParseKeysRefuses(t *testing.T) {
	armored, _ := os.ReadFile("testdata/keys/ed25519.asc")
	binary, _ := os.ReadFile("testdata/keys/ed25519.gpg")
	secret, _ := os.ReadFile("testdata/keys/ed25519-secret.asc")
	// Flip one base64 character of the body: the armor checksum must catch it.
	lines := strings.Split(string(armored), "\n")
	for i, l := range lines {
		if i > 1 && len(l) > 10 && !strings.HasPrefix(l, "=") && !strings.HasPrefix(l, "-") {
			r := []byte(l)
			if r[5] == 'A' {
				r[5] = 'B'
			} else {
				r[5] = 'A'
			}
			lines[i] = string(r)
			break
		}
	}
	damaged := strings.Join(lines, "\n")
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"checksum", []byte(damaged), "checksum mismatch"},
		{"truncated armor", armored[:len(armored)/2], "no END line"},
		{"truncated binary", binary[:len(binary)-10], "truncated"},
		{"secret key", secret, "not a public key block"},
		{"html page", []byte("<html>Not Found</html>"), "not an OpenPGP packet"},
		{"empty", nil, "no OpenPGP public key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := ParseKeys(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseKeys: %v, want an error with %q", err, tc.want)
			}
		})
	}
}

func TestCheckKeys(t *testing.T) {
	rsa, _ := os.ReadFile("testdata/keys/rsa.asc")
	ed, _ := os.ReadFile("testdata/keys/ed25519.asc")
	const rsaFpr = "57C4CFD597ABD7AE832BD45315B05D7F7627CA8C"
	const edFpr = "A487328CDFEA9337F8EFD10BE990204A238B0382"
	// As GitLab's page prints it: groups of four, lower case is accepted too.
	spaced := "57c4 cfd5 97ab d7ae 832b  d453 15b0 5d7f 7627 ca8c"

	if _, err := CheckKeys(rsa, []string{spaced}); err != nil {
		t.Errorf("pinned key refused: %v", err)
	}
	if _, err := CheckKeys(rsa, []string{RepoKeyFingerprint}); err == nil {
		t.Error("a key that is not pinned was accepted")
	} else {
		var km *KeyMismatchError
		if !errors.As(err, &km) || !strings.Contains(err.Error(), rsaFpr) || !strings.Contains(err.Error(), RepoKeyFingerprint) {
			t.Errorf("error %v: want a KeyMismatchError naming the key found and the key pinned", err)
		}
	}
	// A file with the pinned key and another one: the other could sign the repository.
	both := append(append([]byte{}, rsa...), ed...)
	_, err := CheckKeys(both, []string{rsaFpr})
	if err == nil || !strings.Contains(err.Error(), edFpr) || strings.Contains(err.Error(), "holds key "+rsaFpr) {
		t.Errorf("a file with an extra key: %v, want it refused naming only %s", err, edFpr)
	}
	if bin, err := CheckKeys(both, []string{rsaFpr, edFpr}); err != nil {
		t.Errorf("both pinned: %v", err)
	} else if _, keys, _ := ParseKeys(bin); len(keys) != 2 {
		t.Errorf("keyring of two armored blocks holds %d keys, want 2", len(keys))
	}
	// A subkey's fingerprint is not a primary key: pinning it accepts nothing.
	if _, err := CheckKeys(rsa, []string{"280CAADA0CC133BF61B72D72A79F68B319D9466C"}); err == nil {
		t.Error("pinning a subkey accepted its primary key")
	}
}

func TestPinnedFingerprintsAreWellFormed(t *testing.T) {
	for _, f := range []string{RepoKeyFingerprint, OmnibusPackageKeyFingerprint, RunnerPackageKeyFingerprint} {
		if len(f) != 40 || strings.Trim(f, "0123456789ABCDEF") != "" {
			t.Errorf("pinned fingerprint %q is not 40 upper-case hex digits", f)
		}
	}
}
