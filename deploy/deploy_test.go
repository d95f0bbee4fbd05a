// Package deploy holds the deployment files (Kubernetes manifests, a systemd
// unit) and the tests that keep them working: each file is validated against
// what reads it (the Kubernetes API types, systemd-analyze, the agent's own
// flag parser), and the systemd unit's command line is run.
//
// It is a module of its own so that hearsay's library does not depend on the
// Kubernetes API packages; make test runs it.
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hearsaydb/hearsay/agent"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// manifests reads the Kubernetes file: every document decoded strictly (an
// unknown or misspelt field is an error) into the API type of its kind.
type manifests struct {
	svc *corev1.Service
	sts *appsv1.StatefulSet
	pdb *policyv1.PodDisruptionBudget
}

func readManifests(t *testing.T, path string) manifests {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m manifests
	for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(data), -1) {
		if strings.TrimSpace(stripComments(doc)) == "" {
			continue
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("%s: document %d: %v", path, i+1, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "v1 Service":
			m.svc = &corev1.Service{}
			obj = m.svc
		case "apps/v1 StatefulSet":
			m.sts = &appsv1.StatefulSet{}
			obj = m.sts
		case "policy/v1 PodDisruptionBudget":
			m.pdb = &policyv1.PodDisruptionBudget{}
			obj = m.pdb
		default:
			t.Fatalf("%s: document %d: unexpected %s %s", path, i+1, tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: document %d (%s): %v", path, i+1, tm.Kind, err)
		}
	}
	if m.svc == nil || m.sts == nil || m.pdb == nil {
		t.Fatalf("%s: want a Service, a StatefulSet and a PodDisruptionBudget", path)
	}
	return m
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// expand replaces the $(VAR) references Kubernetes expands in args with the
// values vars gives; a reference to a variable the container does not define
// is an error, as it would stay unexpanded.
func expand(t *testing.T, s string, vars map[string]string) string {
	t.Helper()
	return regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`).ReplaceAllStringFunc(s, func(ref string) string {
		v, ok := vars[ref[2:len(ref)-1]]
		if !ok {
			t.Errorf("%q refers to %s, which the container does not define", s, ref)
		}
		return v
	})
}

// flagValue is the value of --name=value or --name value in args.
func flagValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
	}
	return "", false
}

func TestKubernetesManifests(t *testing.T) {
	m := readManifests(t, filepath.Join("kubernetes", "hearsay.yaml"))
	svc, sts, pdb := m.svc, m.sts, m.pdb

	// The Service is headless and lists pods before they are ready: a node
	// is ready only once it has joined, so the first must find each other.
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("service clusterIP %q, want None (headless: the name resolves to every pod)", svc.Spec.ClusterIP)
	}
	if !svc.Spec.PublishNotReadyAddresses {
		t.Error("service must publish not-ready addresses: nodes join through it before they are ready")
	}
	if sts.Spec.ServiceName != svc.Name {
		t.Errorf("statefulset serviceName %q, service is %q", sts.Spec.ServiceName, svc.Name)
	}

	// Selectors select the pods.
	podLabels := labels.Set(sts.Spec.Template.Labels)
	for what, sel := range map[string]*metav1.LabelSelector{
		"statefulset": sts.Spec.Selector, "poddisruptionbudget": pdb.Spec.Selector,
	} {
		s, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			t.Fatalf("%s selector: %v", what, err)
		}
		if s.Empty() || !s.Matches(podLabels) {
			t.Errorf("%s selector %v does not select the pods (labels %v)", what, s, podLabels)
		}
	}
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) || len(svc.Spec.Selector) == 0 {
		t.Errorf("service selector %v does not select the pods (labels %v)", svc.Spec.Selector, podLabels)
	}
	if pdb.Spec.MaxUnavailable == nil && pdb.Spec.MinAvailable == nil {
		t.Error("poddisruptionbudget sets neither maxUnavailable nor minAvailable")
	}
	if sts.Spec.Replicas == nil || *sts.Spec.Replicas < 3 {
		t.Error("statefulset should run at least 3 replicas")
	}

	if len(sts.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(sts.Spec.Template.Spec.Containers))
	}
	c := sts.Spec.Template.Spec.Containers[0]

	// The agent's arguments, with the variables Kubernetes expands, parse
	// with the agent's own parser and pass its secure-by-default check
	// without --insecure.
	vars := map[string]string{}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom != nil && e.ValueFrom.FieldRef != nil:
			vars[e.Name] = map[string]string{
				"metadata.name": "hearsay-0", "status.podIP": "10.1.2.3", "metadata.namespace": "default",
			}[e.ValueFrom.FieldRef.FieldPath]
			if vars[e.Name] == "" {
				t.Errorf("env %s: unexpected field %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
			}
		default:
			vars[e.Name] = e.Value
		}
	}
	var args []string
	for _, a := range c.Args {
		args = append(args, expand(t, a, vars))
	}
	if slices.Contains(args, "--"+agent.FlagInsecure) {
		t.Error("the manifests must be secure by default: no --insecure")
	}
	cfg, err := agent.ParseConfig(args, func(string) string { return "" })
	if err != nil {
		t.Fatalf("agent rejects the statefulset's args %q: %v", args, err)
	}
	if err := cfg.CheckExposure(); err != nil {
		t.Fatalf("agent would refuse to start with the statefulset's args: %v", err)
	}
	if cfg.Name != "hearsay-0" {
		t.Errorf("node name %q, want the pod's name", cfg.Name)
	}
	if len(cfg.Join) == 0 || !strings.HasPrefix(cfg.Join[0], svc.Name+".") {
		t.Errorf("--join %v should name the headless service %q", cfg.Join, svc.Name)
	}

	// The gossip port is the container's and the Service's, TCP and UDP.
	_, port, err := net.SplitHostPort(cfg.Bind)
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []corev1.Protocol{corev1.ProtocolTCP, corev1.ProtocolUDP} {
		if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
			return fmt.Sprint(p.ContainerPort) == port && p.Protocol == proto
		}) {
			t.Errorf("container does not expose gossip port %s/%s", port, proto)
		}
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool {
			return fmt.Sprint(p.Port) == port && p.Protocol == proto
		}) {
			t.Errorf("service does not expose gossip port %s/%s", port, proto)
		}
	}

	// Volumes: the data dir is the claim template's mount; the key file is
	// in the secret's mount.
	mountOf := func(path string) (corev1.VolumeMount, bool) {
		for _, vm := range c.VolumeMounts {
			if path == vm.MountPath || strings.HasPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/") {
				return vm, true
			}
		}
		return corev1.VolumeMount{}, false
	}
	if vm, ok := mountOf(cfg.DataDir); !ok || len(sts.Spec.VolumeClaimTemplates) == 0 || sts.Spec.VolumeClaimTemplates[0].Name != vm.Name {
		t.Errorf("--data-dir %s is not on the statefulset's volume claim", cfg.DataDir)
	}
	if vm, ok := mountOf(cfg.SecretKeyFile); !ok {
		t.Errorf("--secret-key-file %s is on no volume", cfg.SecretKeyFile)
	} else {
		i := slices.IndexFunc(sts.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
		if i < 0 || sts.Spec.Template.Spec.Volumes[i].Secret == nil {
			t.Errorf("--secret-key-file %s: volume %s is not a secret", cfg.SecretKeyFile, vm.Name)
		} else if mode := sts.Spec.Template.Spec.Volumes[i].Secret.DefaultMode; mode == nil || *mode&0o007 != 0 {
			t.Errorf("the key's secret volume must not be readable by others (defaultMode %v)", mode)
		}
	}

	// The probes run the binary's health check against the agent's own
	// HTTP address; readiness asks for --ready.
	probes := map[string]*corev1.Probe{"startup": c.StartupProbe, "liveness": c.LivenessProbe, "readiness": c.ReadinessProbe}
	for name, p := range probes {
		if p == nil || p.Exec == nil {
			t.Errorf("%s probe: want an exec probe running /hearsay health", name)
			continue
		}
		cmd := p.Exec.Command
		if len(cmd) < 2 || cmd[0] != "/hearsay" || cmd[1] != "health" {
			t.Errorf("%s probe runs %q, want /hearsay health", name, cmd)
			continue
		}
		if addr, _ := flagValue(cmd, "addr"); addr != cfg.HTTP {
			t.Errorf("%s probe asks %q, the agent serves HTTP on %q", name, addr, cfg.HTTP)
		}
		if got := slices.Contains(cmd, "--ready"); got != (name == "readiness") {
			t.Errorf("%s probe: --ready is %v", name, got)
		}
	}
	if sc := sts.Spec.Template.Spec.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("pods should run as non-root (the image's user is 65532)")
	}
}

// unit is a systemd unit file: section → key → values (in order).
type unit map[string]map[string][]string

func readUnit(t *testing.T, path string) unit {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			section = l[1 : len(l)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", path, n, l)
			}
			u[section][k] = append(u[section][k], v)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return u
}

func (u unit) one(t *testing.T, section, key string) string {
	t.Helper()
	v := u[section][key]
	if len(v) != 1 {
		t.Fatalf("[%s] %s: want one value, got %q", section, key, v)
	}
	return v[0]
}

// buildAgent builds the hearsay binary the way make build does.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "hearsay")
	cmd := exec.Command("go", "build", "-tags", "noplot", "-o", bin, "./cmd/hearsay")
	cmd.Dir = ".." // in hearsay's own module, with its go.sum
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func TestSystemdUnit(t *testing.T) {
	path := filepath.Join("systemd", "hearsay.service")
	u := readUnit(t, path)
	bin := buildAgent(t)
	const installed = "/usr/local/bin/hearsay"

	execStart := u.one(t, "Service", "ExecStart")
	if !strings.HasPrefix(execStart, installed+" agent ") {
		t.Fatalf("ExecStart %q: want %s agent …", execStart, installed)
	}
	if u.one(t, "Service", "KillSignal") != "SIGTERM" {
		t.Error("KillSignal must be SIGTERM: the agent leaves gracefully on it")
	}
	if _, ok := u["Install"]["WantedBy"]; !ok {
		t.Error("[Install] WantedBy missing: systemctl enable would do nothing")
	}

	// systemd's own check, on a copy whose ExecStart names the binary just
	// built (verify requires the command to exist and be executable).
	verify, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatalf("systemd-analyze not found (Debian: apt-get install systemd): %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	copyPath := filepath.Join(dir, "hearsay.service")
	if err := os.WriteFile(copyPath, bytes.ReplaceAll(data, []byte(installed), []byte(bin)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(verify, "verify", "--man=no", copyPath).CombinedOutput()
	if err != nil || bytes.Contains(out, []byte("hearsay.service")) {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}

	// Run the command line as systemd would: its ${VARIABLES} are the
	// directories systemd makes, the environment that of the unit plus the
	// EnvironmentFile an operator writes (here: loopback addresses).
	state := filepath.Join(dir, "state")
	creds := filepath.Join(dir, "credentials")
	for _, d := range []string{state, creds} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	keygen := exec.Command(bin, "keys", "generate", "--out", filepath.Join(creds, "gossip.key"))
	if out, err := keygen.CombinedOutput(); err != nil {
		t.Fatalf("keys generate: %v\n%s", err, out)
	}
	env := []string{"STATE_DIRECTORY=" + state, "CREDENTIALS_DIRECTORY=" + creds, "PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	env = append(env, u["Service"]["Environment"]...)
	httpAddr := freePort(t)
	env = append(env, "HEARSAY_NAME=unit-test", "HEARSAY_BIND="+freePort(t), "HEARSAY_HTTP="+httpAddr)
	lookup := func(k string) string {
		for i := len(env) - 1; i >= 0; i-- {
			if v, ok := strings.CutPrefix(env[i], k+"="); ok {
				return v
			}
		}
		t.Errorf("ExecStart refers to ${%s}, which systemd does not set for this unit", k)
		return ""
	}
	fields := strings.Fields(execStart)
	argv := []string{bin}
	for _, f := range fields[1:] {
		argv = append(argv, regexp.MustCompile(`\$\{([A-Z_]+)\}`).ReplaceAllStringFunc(f, func(ref string) string {
			return lookup(ref[2 : len(ref)-1])
		}))
	}
	var log bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	defer func() {
		if !stopped {
			_ = cmd.Process.Kill()
			<-exited
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/v1/health/live", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("the unit's command line exited: %v\n%s", err, log.String())
		case <-ctx.Done():
			t.Fatalf("the agent never answered /v1/health/live: %v\n%s", err, log.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	if entries, _ := os.ReadDir(state); len(entries) == 0 {
		t.Errorf("the agent keeps nothing in its state directory %s", state)
	}

	// systemctl stop: SIGTERM, and the agent must exit 0 within TimeoutStopSec.
	stopTimeout, err := time.ParseDuration(u.one(t, "Service", "TimeoutStopSec") + "s")
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Fatalf("after SIGTERM the agent exited with %v (systemd would count a failure)\n%s", err, log.String())
		}
	case <-time.After(stopTimeout):
		t.Fatalf("the agent did not exit within TimeoutStopSec=%v of SIGTERM\n%s", stopTimeout, log.String())
	}
	if !strings.Contains(log.String(), `"level":"INFO"`) {
		t.Errorf("HEARSAY_LOG_FORMAT=json from the unit was not applied; log:\n%s", log.String())
	}
}
