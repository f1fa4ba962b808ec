package pkg

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // OpenPGP v4 fingerprints are SHA-1 by definition (RFC 4880 12.2)
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// GitLab's published signing keys, pinned: a key file downloaded from packages.gitlab.com (or
// packages.mirror) is installed only when every primary key in it is one of these.
//
// Source: "Linux package signatures", https://docs.gitlab.com/omnibus/update/package_signatures/
// (omnibus-gitlab doc/update/package_signatures.md; "Current repository signing key" and
// "Current package signing key"), and for the runner's own package key "GPG signatures for
// package installation", https://docs.gitlab.com/runner/install/linux-repository/ (gitlab-runner
// docs/install/linux-repository.md, "Current GPG public key"). The runner's page says the
// repository metadata of every project under packages.gitlab.com is signed with the one
// repository key below.
const (
	// RepoKeyFingerprint signs the APT Release/InRelease files and the YUM repomd.xml of every
	// repository on packages.gitlab.com ("GitLab B.V. (package repository signing key)
	// <packages@gitlab.com>", active from 2020-04-06, expiry extended to 2028-02-06). Published at
	// https://packages.gitlab.com/gpgkey/gpg.key.
	RepoKeyFingerprint = "F6403F6544A38863DAA0B6E03F01618A51312F3F"
	// OmnibusPackageKeyFingerprint signs the gitlab-ee/gitlab-ce packages themselves ("GitLab,
	// Inc. <support@gitlab.com>", expiry 2028-02-16): rpm checks it (dnf gpgcheck=1); apt never
	// checks package signatures, only the repository's.
	OmnibusPackageKeyFingerprint = "98BFDB87FCF10076416C1E0BAD997ACC82DD593D"
	// RunnerPackageKeyFingerprint signs the gitlab-runner packages ("GitLab, Inc.
	// <support@gitlab.com>", published expiry 2026-04-28), for rpm as above.
	RunnerPackageKeyFingerprint = "931DA69CFA3AFEBBC97DAA8C6C57C29C6BA75A4E"
)

// KeyDocs is the page that publishes the pinned repository key, for error messages.
const KeyDocs = "https://docs.gitlab.com/omnibus/update/package_signatures/"

// maxKeyFile bounds a downloaded key file (bytes); GitLab's is about 3 KB.
const maxKeyFile = 1 << 20

// Key is one OpenPGP primary key found in a key file.
type Key struct {
	// Fingerprint is the primary key's fingerprint, 40 (v4) or 64 (v5, v6) upper-case hex digits.
	Fingerprint string
	// Subkeys are the fingerprints of the key's subkeys, in file order.
	Subkeys []string
}

// ParseKeys reads an OpenPGP public key file, ASCII-armored ("-----BEGIN PGP PUBLIC KEY
// BLOCK-----", checksum checked when present) or binary, and returns the binary packets (what
// apt's signed-by wants, the output of gpg --dearmor) and the primary keys in it with their
// fingerprints computed as RFC 4880 12.2 (v4: SHA-1 over 0x99, a two-octet length and the key
// packet body) and RFC 9580 5.5.4 (v6: SHA-256 over 0x9B and a four-octet length; v5 the same
// with 0x9A). A secret key, a v3 key or a malformed packet is an error.
func ParseKeys(data []byte) (binaryKeys []byte, keys []Key, err error) {
	bin := data
	if bytes.Contains(data, []byte("-----BEGIN PGP")) {
		if bin, err = dearmor(data); err != nil {
			return nil, nil, err
		}
	}
	keys, err = parsePackets(bin)
	if err != nil {
		return nil, nil, err
	}
	if len(keys) == 0 {
		return nil, nil, errors.New("no OpenPGP public key in it")
	}
	return bin, keys, nil
}

// dearmor decodes every "PGP PUBLIC KEY BLOCK" in data and concatenates their packets.
func dearmor(data []byte) ([]byte, error) {
	var out []byte
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(line, "-----BEGIN PGP ") {
			continue
		}
		if line != "-----BEGIN PGP PUBLIC KEY BLOCK-----" {
			return nil, fmt.Errorf("armored block %q is not a public key block", strings.Trim(line, "-"))
		}
		i++
		// Armor headers (Version: ..., Comment: ...) end at the first empty line.
		for ; i < len(lines) && strings.TrimSpace(lines[i]) != ""; i++ {
			if !strings.Contains(lines[i], ": ") {
				break // no headers at all: this line is already base64
			}
		}
		var b64, crc strings.Builder
		ended := false
		for ; i < len(lines); i++ {
			l := strings.TrimSpace(lines[i])
			switch {
			case l == "":
			case strings.HasPrefix(l, "-----END PGP PUBLIC KEY BLOCK-----"):
				ended = true
			case strings.HasPrefix(l, "="):
				crc.WriteString(l[1:])
			default:
				b64.WriteString(l)
			}
			if ended {
				break
			}
		}
		if !ended {
			return nil, errors.New("armored key block has no END line: the file is truncated")
		}
		block, err := base64.StdEncoding.DecodeString(b64.String())
		if err != nil {
			return nil, fmt.Errorf("armored key block: %w", err)
		}
		if crc.Len() > 0 {
			want, err := base64.StdEncoding.DecodeString(crc.String())
			if err != nil || len(want) != 3 {
				return nil, errors.New("armored key block: bad checksum line")
			}
			got := crc24(block)
			if !bytes.Equal(want, []byte{byte(got >> 16), byte(got >> 8), byte(got)}) {
				return nil, errors.New("armored key block: checksum mismatch: the file is damaged")
			}
		}
		out = append(out, block...)
	}
	if out == nil {
		return nil, errors.New("no PGP PUBLIC KEY BLOCK in it")
	}
	return out, nil
}

// crc24 is the armor checksum of RFC 4880 6.1.
func crc24(b []byte) uint32 {
	crc := uint32(0xB704CE)
	for _, c := range b {
		crc ^= uint32(c) << 16
		for range 8 {
			crc <<= 1
			if crc&0x1000000 != 0 {
				crc ^= 0x1864CFB
			}
		}
	}
	return crc & 0xFFFFFF
}

// OpenPGP packet tags (RFC 9580 5).
const (
	tagSecretKey    = 5
	tagPublicKey    = 6
	tagSecretSubkey = 7
	tagPublicSubkey = 14
)

func parsePackets(b []byte) ([]Key, error) {
	var keys []Key
	for len(b) > 0 {
		hdr := b[0]
		if hdr&0x80 == 0 {
			return nil, fmt.Errorf("not an OpenPGP packet (byte 0x%02x): the file is neither an armored nor a binary key", hdr)
		}
		var tag int
		var n, hl int
		if hdr&0x40 != 0 { // new format
			tag = int(hdr & 0x3f)
			if len(b) < 2 {
				return nil, errors.New("truncated packet header")
			}
			switch o := b[1]; {
			case o < 192:
				n, hl = int(o), 2
			case o < 224:
				if len(b) < 3 {
					return nil, errors.New("truncated packet header")
				}
				n, hl = (int(o)-192)<<8+int(b[2])+192, 3
			case o == 255:
				if len(b) < 6 {
					return nil, errors.New("truncated packet header")
				}
				n, hl = int(binary.BigEndian.Uint32(b[2:6])), 6
			default:
				return nil, errors.New("partial-length packet: not allowed in a key")
			}
		} else { // old format
			tag = int(hdr>>2) & 0xf
			switch hdr & 3 {
			case 0:
				if len(b) < 2 {
					return nil, errors.New("truncated packet header")
				}
				n, hl = int(b[1]), 2
			case 1:
				if len(b) < 3 {
					return nil, errors.New("truncated packet header")
				}
				n, hl = int(binary.BigEndian.Uint16(b[1:3])), 3
			case 2:
				if len(b) < 5 {
					return nil, errors.New("truncated packet header")
				}
				n, hl = int(binary.BigEndian.Uint32(b[1:5])), 5
			default:
				n, hl = len(b)-1, 1
			}
		}
		if n < 0 || hl+n > len(b) {
			return nil, errors.New("truncated packet: the key file is damaged")
		}
		body := b[hl : hl+n]
		b = b[hl+n:]
		switch tag {
		case tagSecretKey, tagSecretSubkey:
			return nil, errors.New("it holds a secret key: a repository key file must hold public keys only")
		case tagPublicKey, tagPublicSubkey:
			fpr, err := fingerprint(body)
			if err != nil {
				return nil, err
			}
			if tag == tagPublicKey {
				keys = append(keys, Key{Fingerprint: fpr})
			} else {
				if len(keys) == 0 {
					return nil, errors.New("subkey before any primary key")
				}
				keys[len(keys)-1].Subkeys = append(keys[len(keys)-1].Subkeys, fpr)
			}
		}
	}
	return keys, nil
}

func fingerprint(body []byte) (string, error) {
	if len(body) == 0 {
		return "", errors.New("empty key packet")
	}
	switch v := body[0]; v {
	case 4:
		h := sha1.New() //nolint:gosec // see the import
		h.Write([]byte{0x99, byte(len(body) >> 8), byte(len(body))})
		h.Write(body)
		return strings.ToUpper(hex.EncodeToString(h.Sum(nil))), nil
	case 5, 6:
		h := sha256.New()
		prefix := byte(0x9A)
		if v == 6 {
			prefix = 0x9B
		}
		var l [4]byte
		binary.BigEndian.PutUint32(l[:], uint32(len(body)))
		h.Write(append([]byte{prefix}, l[:]...))
		h.Write(body)
		return strings.ToUpper(hex.EncodeToString(h.Sum(nil))), nil
	default:
		return "", fmt.Errorf("OpenPGP key version %d is not supported (only 4, 5 and 6)", v)
	}
}

// NormalizeFingerprint removes spaces and upper-cases a fingerprint as GitLab's pages print it
// ("F640 3F65 ...").
func NormalizeFingerprint(f string) string {
	return strings.ToUpper(strings.Join(strings.Fields(f), ""))
}

// CheckKeys parses a key file (see ParseKeys) and accepts it only when every primary key in it
// is one of pinned (fingerprints, spaces allowed): a file that also carries another key would let
// that key sign the repository. It returns the binary keyring to install. The error names the
// fingerprints found and the ones trusted.
func CheckKeys(data []byte, pinned []string) ([]byte, error) {
	bin, keys, err := ParseKeys(data)
	if err != nil {
		return nil, err
	}
	trusted := make([]string, len(pinned))
	for i, p := range pinned {
		trusted[i] = NormalizeFingerprint(p)
	}
	var bad []string
	for _, k := range keys {
		if !slices.Contains(trusted, k.Fingerprint) {
			bad = append(bad, k.Fingerprint)
		}
	}
	if len(bad) > 0 {
		return nil, &KeyMismatchError{Found: bad, Pinned: trusted}
	}
	return bin, nil
}

// KeyMismatchError is a key file holding a key that is not pinned.
type KeyMismatchError struct {
	// Found are the fingerprints in the file that are not pinned; Pinned those that are trusted.
	Found, Pinned []string
}

func (e *KeyMismatchError) Error() string {
	return fmt.Sprintf("it holds key %s, which is not the pinned signing key %s",
		strings.Join(e.Found, ", "), strings.Join(e.Pinned, " or "))
}
