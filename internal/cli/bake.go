package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/glbootstrap/glbootstrap/internal/engine"
	"github.com/glbootstrap/glbootstrap/internal/host"
	"github.com/glbootstrap/glbootstrap/internal/role"
	"github.com/glbootstrap/glbootstrap/internal/systemd"
)

// SelfPath is where bake installs glbootstrap itself, and where the user-data and the units
// glbootstrap writes expect it.
const SelfPath = "/usr/local/bin/glbootstrap"

func newBakeCmd(e *env) *cobra.Command {
	var role, source, root, output string
	var yes bool
	cmd := &cobra.Command{
		Use:   "bake --role ROLE --config SRC",
		Short: "AMI bake: run the role's bake phases, install glbootstrap itself, and leave no machine identity",
		Long: "Run the role's bake-stage phases (see `glbootstrap phases`; no secret is read), install this\n" +
			"glbootstrap binary at " + SelfPath + ", then seal the image: the role's services stopped and\n" +
			"disabled until the boot converge has configured them, the role's machine identity removed (the\n" +
			"runner's .runner_system_id), /etc/machine-id emptied (machine-id(5): systemd makes a new one at\n" +
			"first boot) and the SSH host keys removed (cloud-init makes new ones at first boot). A runner front\n" +
			"that holds a runner token is refused: every instance of the image would share it.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if root == "/" && !yes {
				return exitf(ExitUsage, "bake seals THIS machine into an image: it empties /etc/machine-id, deletes the SSH host keys and disables the role's services; "+
					"run it on the image builder (Packer) with --yes, or on a tree with --root DIR\nnothing was changed")
			}
			return bake(cmd.Context(), e, role, source, root, output)
		},
	}
	e.addRoleFlag(cmd, &role)
	addConfigFlag(cmd, &source)
	cmd.Flags().StringVar(&root, "root", "/", "converge the tree under DIR instead of this host (a chroot bake)")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "output format: text or json (JSON lines)")
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm sealing the live system (without --root): this machine becomes an image")
	return cmd
}

func bake(ctx context.Context, e *env, roleName, source, root, output string) error {
	e.json = output == "json"
	if err := e.checkCommon(roleName, source, output); err != nil {
		return err
	}
	def, _ := e.roles.Find(roleName)
	var names []string
	for _, p := range def.Phases() {
		if p.Stage == engine.Bake {
			names = append(names, p.Name)
		}
	}
	s, err := openSession(ctx, e, "bake --role "+def.Name, def, source, root, output, false, true, names)
	if err != nil {
		return err
	}
	defer s.close()
	if def.Seal.Check != nil {
		if err := def.Seal.Check(s.host); err != nil {
			return exitf(ExitFailed, "%v\nnothing was changed", err)
		}
	}
	var phases []engine.Phase
	for _, p := range s.role.Phases() {
		if p.Stage == engine.Bake {
			phases = append(phases, p)
		}
	}
	phases = append(phases, engine.Phase{
		Name: "seal", Stage: engine.Bake,
		Description: "install glbootstrap itself; stop and disable the role's services; remove this machine's identity",
		Run: func(ctx context.Context) ([]host.Step, error) {
			return seal(ctx, s.host, def.Seal)
		},
	})
	var failed []string
	rep, runErr := engine.Run(ctx, def.Name, phases, engine.Options{Observe: func(r engine.PhaseResult) {
		if r.Status == engine.Failed {
			failed = append(failed, r.Phase)
		}
		s.out.phase(r)
	}})
	s.out.summary(rep)
	switch {
	case runErr != nil && len(failed) == 0:
		return exitf(ExitFailed, "%s", s.out.mask(runErr.Error()))
	case runErr != nil:
		return exitf(ExitFailed, "phase %s failed (its error is printed with the phase above): fix the cause and run bake again; do not make an image of this host yet", failed[0])
	}
	return nil
}

// seal installs the running binary at SelfPath and removes what identifies this machine.
func seal(ctx context.Context, h *host.Host, sl role.Seal) ([]host.Step, error) {
	var steps []host.Step
	self, err := os.Executable()
	if err != nil {
		return steps, fmt.Errorf("finding this glbootstrap binary: %w", err)
	}
	data, err := os.ReadFile(self)
	if err != nil {
		return steps, fmt.Errorf("reading this glbootstrap binary (%s): %w", self, err)
	}
	st, err := h.EnsureFile(host.File{Path: SelfPath, Data: data, Mode: 0o755, NoDiff: "the glbootstrap binary"})
	steps = append(steps, st)
	if err != nil {
		return steps, err
	}
	if sl.Installed != nil {
		if err := sl.Installed(h); err != nil {
			return steps, err
		}
	}
	units := systemd.For(h, false)
	for _, u := range sl.Units {
		if err := units.Installed(ctx, u); err != nil {
			if errors.Is(err, systemd.ErrNoUnit) {
				return steps, fmt.Errorf("%s is not installed, so an image baked now could not run the role: %s, then bake again: %w", u, sl.InstallHint, err)
			}
			return steps, err
		}
		for _, f := range []func(context.Context, string) (host.Step, error){units.Stop, units.Disable} {
			st, err := f(ctx, u)
			steps = append(steps, st)
			if err != nil {
				return steps, err
			}
		}
	}
	remove := append([]string{}, sl.Remove...)
	// /var/lib/dbus/machine-id is a link to /etc/machine-id on Debian and Ubuntu; a copy of its
	// own would keep the old id.
	if fi, err := h.Lstat("/var/lib/dbus/machine-id"); err == nil && fi.Mode().IsRegular() {
		remove = append(remove, "/var/lib/dbus/machine-id")
	}
	if ents, err := h.ReadDir("/etc/ssh"); err == nil {
		for _, en := range ents {
			n := en.Name()
			if strings.HasPrefix(n, "ssh_host_") && (strings.HasSuffix(n, "_key") || strings.HasSuffix(n, "_key.pub")) {
				remove = append(remove, "/etc/ssh/"+n)
			}
		}
	}
	for _, p := range remove {
		st, err := h.EnsureAbsent(p, "this machine's identity: each instance makes its own")
		steps = append(steps, st)
		if err != nil {
			return steps, err
		}
	}
	// machine-id(5): an empty file makes systemd generate the id at first boot ("uninitialized").
	st, err = h.EnsureFile(host.File{Path: "/etc/machine-id", Data: []byte{}, Mode: 0o444})
	steps = append(steps, st)
	return steps, err
}
