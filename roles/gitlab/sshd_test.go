package gitlab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// nobody is the uid/gid sshd runs as in these tests when they run as root: as root, sshd -t
// also insists on its privilege separation directory /run/sshd, which only a booted host has,
// and the tests must not create it. As any other user it checks just the configuration.
const nobody = 65534

// sshdCmd runs sshd with args, as nobody when the test runs as root.
func sshdCmd(sshd string, args ...string) *exec.Cmd {
	cmd := exec.Command(sshd, args...)
	if os.Geteuid() == 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	}
	return cmd
}

// sshdWorld lays out an sshd configuration like Debian's in dir: sshd_config including
// sshd_config.d/*.conf first, a 50-cloud-init.conf that turns passwords back on, the rendered
// drop-in, and a throwaway host key. It returns the path of sshd_config.
func sshdWorld(t *testing.T, dropIn []byte) string {
	t.Helper()
	keygen := needTool(t, "ssh-keygen", "openssh-client")
	dir := t.TempDir()
	d := filepath.Join(dir, "sshd_config.d")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "ssh_host_ed25519_key")
	if out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	files := map[string]string{
		filepath.Join(d, filepath.Base(SSHDropIn)): string(dropIn),
		filepath.Join(d, "50-cloud-init.conf"):     "PasswordAuthentication yes\nPermitRootLogin yes\n",
		filepath.Join(dir, "sshd_config"): "Include " + d + "/*.conf\nHostKey " + key + "\n" +
			"KbdInteractiveAuthentication no\nUsePAM yes\nX11Forwarding yes\nPrintMotd no\nAcceptEnv LANG LC_*\n",
	}
	for p, c := range files {
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if os.Geteuid() == 0 {
		// sshd as nobody must reach the files, and own the key (sshd refuses a key others can read).
		for p := dir; p != os.TempDir() && p != "/"; p = filepath.Dir(p) {
			if err := os.Chmod(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(key, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "sshd_config")
}

func TestSSHDropInPassesSSHDAndWins(t *testing.T) {
	sshd := needTool(t, "sshd", "openssh-server")
	for _, user := range []string{"git", "gitlab-git"} {
		data, err := renderSSHDropIn(user)
		if err != nil {
			t.Fatal(err)
		}
		cfg := sshdWorld(t, data)
		if out, err := sshdCmd(sshd, "-t", "-f", cfg).CombinedOutput(); err != nil {
			t.Fatalf("sshd -t: %v\n%s\n--- drop-in\n%s", err, out, data)
		}
		// The effective settings for a person and for the git user: the drop-in wins over
		// 50-cloud-init.conf because it is read first.
		for _, conn := range []string{"user=admin,host=h,addr=10.0.1.5", "user=" + user + ",host=h,addr=10.0.1.5"} {
			out, err := sshdCmd(sshd, "-T", "-f", cfg, "-C", conn).CombinedOutput()
			if err != nil {
				t.Fatalf("sshd -T: %v\n%s", err, out)
			}
			for _, want := range []string{"passwordauthentication no", "kbdinteractiveauthentication no", "permitrootlogin no",
				"allowusers " + user, "permittty no", "authenticationmethods publickey", "permitemptypasswords no"} {
				if !strings.Contains(string(out), "\n"+want+"\n") {
					t.Errorf("sshd -T -C %s lacks %q", conn, want)
				}
			}
		}
	}
}

func TestSSHDRejectsBrokenDropIn(t *testing.T) {
	sshd := needTool(t, "sshd", "openssh-server")
	cfg := sshdWorld(t, []byte("AllowUsers git\nPermitRootLogin perhaps\n"))
	if out, err := sshdCmd(sshd, "-t", "-f", cfg).CombinedOutput(); err == nil {
		t.Fatalf("sshd -t accepted a broken drop-in:\n%s", out)
	}
}

func TestSSHDropInRefusesOddUserNames(t *testing.T) {
	for _, u := range []string{"", "git admin", "git\nPermitRootLogin yes", "*", "Git"} {
		if _, err := renderSSHDropIn(u); err == nil {
			t.Errorf("renderSSHDropIn(%q) succeeded", u)
		}
	}
}
