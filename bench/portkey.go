package bench

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The P arm: Portkey's open-source gateway (npm @portkey-ai/gateway) at an
// exact version, every dependency pinned by the lock file in portkey/,
// installed with `npm ci` into a cache directory outside the repository.

// PortkeyVersion is the gateway version the P arm runs.
const PortkeyVersion = "1.15.2"

var (
	//go:embed portkey/package.json
	portkeyPackageJSON []byte
	//go:embed portkey/package-lock.json
	portkeyLock []byte
	//go:embed portkey/preload.mjs
	portkeyPreload []byte
)

// DefaultPortkeyDir is where the gateway is installed unless told
// otherwise: the user's cache directory ($XDG_CACHE_HOME or ~/.cache).
func DefaultPortkeyDir() string {
	d, err := os.UserCacheDir()
	if err != nil {
		d = os.TempDir()
	}
	return filepath.Join(d, "llmbench", "portkey-"+PortkeyVersion)
}

func portkeyServer(dir string) string {
	return filepath.Join(dir, "node_modules", "@portkey-ai", "gateway", "build", "start-server.js")
}

// PortkeyInstalled tells whether dir holds the pinned gateway, installed
// from this lock file; if not, the reason.
func PortkeyInstalled(dir string) (bool, string) {
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return false, "not installed in " + dir
	}
	if !bytes.Equal(lock, portkeyLock) {
		return false, dir + " holds another lock file"
	}
	b, err := os.ReadFile(filepath.Join(dir, "node_modules", "@portkey-ai", "gateway", "package.json"))
	if err != nil || !bytes.Contains(b, []byte(`"version": "`+PortkeyVersion+`"`)) {
		return false, "no @portkey-ai/gateway@" + PortkeyVersion + " in " + dir
	}
	if _, err := os.Stat(portkeyServer(dir)); err != nil {
		return false, "no gateway build in " + dir
	}
	return true, ""
}

// NodeVersion returns `node --version`, or an error when Node is missing
// or older than 18 (the gateway needs fetch and --import).
func NodeVersion() (string, error) {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return "", fmt.Errorf("node: %v", err)
	}
	v := strings.TrimSpace(string(out))
	major, _ := strconv.Atoi(strings.SplitN(strings.TrimPrefix(v, "v"), ".", 2)[0])
	if major < 18 {
		return v, fmt.Errorf("node %s is older than 18", v)
	}
	return v, nil
}

// InstallPortkey installs the pinned gateway into dir with `npm ci` (from
// the npm registry; install scripts are not run) unless it is there
// already.
func InstallPortkey(ctx context.Context, dir string) error {
	if ok, _ := PortkeyInstalled(dir); ok {
		return nil
	}
	if _, err := NodeVersion(); err != nil {
		return err
	}
	if _, err := exec.LookPath("npm"); err != nil {
		return errors.New("npm is not on PATH")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "package.json"), portkeyPackageJSON, 0o644); err != nil {
		return err
	}
	// npm ci installs exactly what the lock file says; the lock file goes
	// again if the install fails, so that a failed install is never taken
	// for a complete one.
	lockPath := filepath.Join(dir, "package-lock.json")
	if err := os.WriteFile(lockPath, portkeyLock, 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(lockPath)
		return fmt.Errorf("npm ci in %s: %v\n%s", dir, err, out)
	}
	if ok, why := PortkeyInstalled(dir); !ok {
		return errors.New(why)
	}
	return nil
}

// startPortkey runs the installed gateway on a loopback port, with the
// preload that binds it to 127.0.0.1 and lets its streams work on Node
// (see portkey/preload.mjs).
func startPortkey(pin Pinning, dir, runDir string, port int) (*proc, error) {
	preload := filepath.Join(runDir, "portkey-preload.mjs")
	if err := os.WriteFile(preload, portkeyPreload, 0o644); err != nil {
		return nil, err
	}
	cmd := pin.command("node", "--import", preload, portkeyServer(dir), "--port="+strconv.Itoa(port), "--headless")
	cmd.Env = append(cmd.Environ(), "NODE_ENV=production")
	cmd.Dir = dir
	p, err := start("portkey", cmd, filepath.Join(runDir, "portkey.log"))
	if err != nil {
		return nil, err
	}
	if err := waitTCP(p, port, 60*time.Second); err != nil {
		p.stop(2 * time.Second)
		return nil, err
	}
	return p, nil
}

// portkeyTarget is the request shape that sends Portkey's answer to the
// mock: provider openai at a custom host (loopback hosts are trusted by
// default).
func portkeyTarget(port int, mockAddr string) target {
	h := http.Header{}
	h.Set("x-portkey-provider", "openai")
	h.Set("x-portkey-custom-host", "http://"+mockAddr+"/v1")
	return target{url: fmt.Sprintf("http://127.0.0.1:%d/v1/chat/completions", port), header: h}
}
