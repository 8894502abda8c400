// The Sluice CNI conformance driver: runs sluice-cni through libcni, the
// runtime library containerd, CRI-O and podman use, for every verb and every
// spec version it speaks (0.3.0 to 1.0.0), alone and chained with reference
// plugins; then the spec-exact invocations libcni 1.1.2 cannot make (1.1.0
// results, STATUS, GC) and bad inputs, by executing the plugin as the spec
// says. Prints one line per case and ends with "N passed, M failed".
//
// Build (offline, GOPATH mode, Debian's golang-go and golang-github-appc-cni-dev):
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o driver main.go
//
// Run as root against a running agent; see ../README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
)

var (
	binDir      = flag.String("bin-dir", "", "CNI bin directory holding sluice and the reference plugins")
	socket      = flag.String("socket", "", "the agent's API socket")
	delQueueDir = flag.String("del-queue-dir", "", "the agent's DEL queue directory")
	logFile     = flag.String("log-file", "", "sluice-cni log file")
	netnsPrefix = flag.String("netns-prefix", "", "prefix of every netns the driver creates (removed at the end)")
	cacheDir    = flag.String("cache-dir", "", "libcni result cache directory")
)

// libcniVersions are the versions libcni 1.1.2 converts results for.
var libcniVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0"}

var allVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

type suite struct {
	passed, failed int
	netns          []string
	seq            int
}

func (s *suite) run(name string, fn func() error) {
	err := func() (err error) {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic: %v", r)
			}
		}()
		return fn()
	}()
	if err == nil {
		s.passed++
		fmt.Printf("ok   %s\n", name)
	} else {
		s.failed++
		fmt.Printf("FAIL %s: %v\n", name, err)
	}
}

// newNetns makes a named network namespace and returns its path.
func (s *suite) newNetns() string {
	s.seq++
	name := fmt.Sprintf("%s-c%d", *netnsPrefix, s.seq)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		panic(fmt.Sprintf("ip netns add %s: %v %s", name, err, out))
	}
	s.netns = append(s.netns, name)
	return "/var/run/netns/" + name
}

func (s *suite) cleanup() {
	for _, n := range s.netns {
		_ = exec.Command("ip", "netns", "del", n).Run()
	}
}

var containerSeq int

func newContainerID() string {
	containerSeq++
	return fmt.Sprintf("%s%056x", "c0feed00", time.Now().UnixNano()+int64(containerSeq))
}

func sluicePlugin(extra map[string]interface{}) map[string]interface{} {
	p := map[string]interface{}{
		"type":        "sluice",
		"socket":      *socket,
		"delQueueDir": *delQueueDir,
		"logFile":     *logFile,
		"dns":         map[string]interface{}{"nameservers": []string{"10.96.0.10"}, "search": []string{"default.svc.cluster.local"}},
		// Capabilities sluice does not use must be ignored, not rejected.
		"capabilities": map[string]bool{"portMappings": true, "bandwidth": true, "ips": true},
	}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

func conflist(version string, plugins ...map[string]interface{}) *libcni.NetworkConfigList {
	b, _ := json.Marshal(map[string]interface{}{"cniVersion": version, "name": "sluice-conformance", "plugins": plugins})
	l, err := libcni.ConfListFromBytes(b)
	if err != nil {
		panic(err)
	}
	return l
}

func runtimeConf(cid, netns string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID: cid,
		NetNS:       netns,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", "conformance"},
			{"K8S_POD_NAME", "pod-" + cid[len(cid)-6:]},
			{"K8S_POD_INFRA_CONTAINER_ID", cid},
			{"K8S_POD_UID", "uid-" + cid[len(cid)-6:]},
		},
		CapabilityArgs: map[string]interface{}{
			"portMappings": []map[string]interface{}{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}},
			"bandwidth":    map[string]interface{}{"ingressRate": 100000000, "ingressBurst": 1000000},
		},
	}
}

// agentGet does a GET on the agent's API over its unix socket.
func agentGet(path string, out interface{}) error {
	client := http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", *socket)
	}}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://agent" + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(out)
}

type attachment struct {
	Endpoint *struct {
		Namespace  string   `json:"namespace"`
		Pod        string   `json:"pod"`
		HostIfname string   `json:"hostIfname"`
		IPs        []string `json:"ips"`
	} `json:"endpoint"`
	Addresses []string `json:"addresses"`
}

func linkExists(name string) bool {
	return exec.Command("ip", "link", "show", name).Run() == nil
}

// verifyResult checks a result in the 1.0.0 shape: host veth, pod interface
// with sandbox, addresses pointing at it with gateways, default routes, dns.
func verifyResult(r *current.Result, netns string, chainedBefore int) error {
	if len(r.Interfaces) != chainedBefore+2 {
		return fmt.Errorf("want %d interfaces, got %v", chainedBefore+2, r.Interfaces)
	}
	host, pod := r.Interfaces[chainedBefore], r.Interfaces[chainedBefore+1]
	if !strings.HasPrefix(host.Name, "lxc") || host.Sandbox != "" || host.Mac == "" {
		return fmt.Errorf("host interface %+v: want an lxc* veth with a MAC and no sandbox", *host)
	}
	if pod.Name != "eth0" || pod.Sandbox != netns || pod.Mac == "" {
		return fmt.Errorf("pod interface %+v: want eth0 with a MAC in %s", *pod, netns)
	}
	if !linkExists(host.Name) {
		return fmt.Errorf("host veth %s is not in the kernel", host.Name)
	}
	own := 0
	for _, ip := range r.IPs {
		if ip.Interface == nil || *ip.Interface != chainedBefore+1 {
			continue
		}
		own++
		if ip.Gateway == nil {
			return fmt.Errorf("ip %s has no gateway", ip.Address.String())
		}
		ones, bits := ip.Address.Mask.Size()
		if ones != bits {
			return fmt.Errorf("ip %s: want a /32 or /128", ip.Address.String())
		}
	}
	if own == 0 {
		return fmt.Errorf("no ip points at the pod interface (index %d): %v", chainedBefore+1, r.IPs)
	}
	hasDefault := false
	for _, rt := range r.Routes {
		if ones, _ := rt.Dst.Mask.Size(); ones == 0 && rt.GW != nil {
			hasDefault = true
		}
	}
	if !hasDefault {
		return fmt.Errorf("no default route in %v", r.Routes)
	}
	if len(r.DNS.Nameservers) != 1 || r.DNS.Nameservers[0] != "10.96.0.10" {
		return fmt.Errorf("dns %+v: want the configuration's", r.DNS)
	}
	return nil
}

// lifecycle runs ADD, cached result, CHECK, DEL, DEL again through libcni.
func (s *suite) lifecycle(cni *libcni.CNIConfig, version, shape string, list *libcni.NetworkConfigList, chainedBefore int) {
	ctx := context.Background()
	netns := s.newNetns()
	cid := newContainerID()
	rt := runtimeConf(cid, netns)
	name := fmt.Sprintf("libcni %s %s", version, shape)
	var res *current.Result
	var hostVeth string
	s.run(name+": ADD returns a "+version+" result with host veth, pod interface, ips, routes, dns", func() error {
		r, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			return err
		}
		if r.Version() != version {
			return fmt.Errorf("result version %s, want %s", r.Version(), version)
		}
		var raw bytes.Buffer
		if err := r.PrintTo(&raw); err != nil {
			return err
		}
		wantIPVersion := version < "1.0.0"
		if got := strings.Contains(raw.String(), `"version"`); got != wantIPVersion {
			return fmt.Errorf("ips[].version present=%v in %s result, want %v", got, version, wantIPVersion)
		}
		if res, err = current.NewResultFromResult(r); err != nil {
			return err
		}
		if err := verifyResult(res, netns, chainedBefore); err != nil {
			return err
		}
		hostVeth = res.Interfaces[chainedBefore].Name
		return nil
	})
	if res == nil {
		_ = cni.DelNetworkList(ctx, list, rt)
		return
	}
	s.run(name+": the agent registered the endpoint with the pod identity from CNI_ARGS and every address", func() error {
		var a attachment
		if err := agentGet("/v1/endpoints/"+cid+"/eth0", &a); err != nil {
			return err
		}
		if a.Endpoint == nil {
			return fmt.Errorf("no endpoint registered")
		}
		if a.Endpoint.Namespace != "conformance" || a.Endpoint.Pod != "pod-"+cid[len(cid)-6:] || a.Endpoint.HostIfname != hostVeth {
			return fmt.Errorf("endpoint %+v", *a.Endpoint)
		}
		if len(a.Endpoint.IPs) != len(a.Addresses) || len(a.Addresses) == 0 {
			return fmt.Errorf("endpoint ips %v, allocations %v", a.Endpoint.IPs, a.Addresses)
		}
		return nil
	})
	s.run(name+": libcni caches the result", func() error {
		cached, err := cni.GetNetworkListCachedResult(list, rt)
		if err != nil || cached == nil {
			return fmt.Errorf("no cached result: %v", err)
		}
		return nil
	})
	if version >= "0.4.0" {
		s.run(name+": CHECK passes", func() error { return cni.CheckNetworkList(ctx, list, rt) })
	}
	s.run(name+": DEL removes the attachment", func() error {
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			return err
		}
		if linkExists(hostVeth) {
			return fmt.Errorf("host veth %s still exists", hostVeth)
		}
		var a attachment
		if err := agentGet("/v1/endpoints/"+cid+"/eth0", &a); err != nil {
			return err
		}
		if a.Endpoint != nil || len(a.Addresses) != 0 {
			return fmt.Errorf("agent still holds endpoint %v / addresses %v", a.Endpoint, a.Addresses)
		}
		return nil
	})
	s.run(name+": DEL again succeeds", func() error { return cni.DelNetworkList(ctx, list, rt) })
	if version >= "0.4.0" {
		s.run(name+": CHECK after DEL fails", func() error {
			if err := cni.CheckNetworkList(ctx, list, rt); err == nil {
				return fmt.Errorf("CHECK passed for a deleted attachment")
			}
			return nil
		})
	}
}

// rawResult is what an exec of the plugin printed.
type rawResult struct {
	exit   int
	stdout string
	json   map[string]interface{}
}

// execPlugin runs a plugin exactly as the spec says: config on stdin, CNI_* in the environment.
func execPlugin(plugin string, env map[string]string, stdin string) rawResult {
	cmd := exec.Command(filepath.Join(*binDir, plugin))
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	r := rawResult{stdout: out.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.exit = ee.ExitCode()
	} else if err != nil {
		r.exit = -1
	}
	_ = json.Unmarshal(out.Bytes(), &r.json)
	return r
}

func confJSON(version string, extra map[string]interface{}) string {
	c := sluicePlugin(nil)
	c["cniVersion"] = version
	c["name"] = "sluice-conformance"
	for k, v := range extra {
		c[k] = v
	}
	b, _ := json.Marshal(c)
	return string(b)
}

func attachEnv(verb, cid, netns string) map[string]string {
	return map[string]string{"CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_NETNS": netns, "CNI_IFNAME": "eth0", "CNI_PATH": *binDir,
		"CNI_ARGS": "IgnoreUnknown=1;K8S_POD_NAMESPACE=conformance;K8S_POD_NAME=raw"}
}

func expectOK(r rawResult, wantStdout bool) error {
	if r.exit != 0 {
		return fmt.Errorf("exit %d: %s", r.exit, r.stdout)
	}
	if !wantStdout && r.stdout != "" {
		return fmt.Errorf("printed %q, want nothing", r.stdout)
	}
	return nil
}

// expectError checks a spec error: non-zero exit, one JSON object with cniVersion, code, msg.
func expectError(r rawResult, code int) error {
	if r.exit == 0 {
		return fmt.Errorf("exit 0, want an error (stdout %q)", r.stdout)
	}
	if r.json == nil {
		return fmt.Errorf("stdout is not one JSON object: %q", r.stdout)
	}
	got, _ := r.json["code"].(float64)
	msg, _ := r.json["msg"].(string)
	if _, ok := r.json["cniVersion"].(string); !ok || msg == "" {
		return fmt.Errorf("error lacks cniVersion or msg: %s", r.stdout)
	}
	if int(got) != code {
		return fmt.Errorf("code %v, want %d: %s", r.json["code"], code, msg)
	}
	return nil
}

// spec110 drives the verbs libcni 1.1.2 cannot: 1.1.0 ADD/CHECK/DEL, STATUS and GC.
func (s *suite) spec110() {
	netns := s.newNetns()
	cid := newContainerID()
	var added map[string]interface{}
	s.run("spec 1.1.0: ADD prints a 1.1.0 result with interface mtu", func() error {
		r := execPlugin("sluice", attachEnv("ADD", cid, netns), confJSON("1.1.0", map[string]interface{}{"mtu": 1450}))
		if err := expectOK(r, true); err != nil {
			return err
		}
		added = r.json
		if r.json["cniVersion"] != "1.1.0" {
			return fmt.Errorf("cniVersion %v", r.json["cniVersion"])
		}
		ifs, _ := r.json["interfaces"].([]interface{})
		if len(ifs) != 2 {
			return fmt.Errorf("interfaces %v", r.json["interfaces"])
		}
		for _, i := range ifs {
			if mtu, _ := i.(map[string]interface{})["mtu"].(float64); mtu != 1450 {
				return fmt.Errorf("interface %v: want mtu 1450", i)
			}
		}
		return nil
	})
	s.run("spec 1.1.0: CHECK with prevResult passes", func() error {
		return expectOK(execPlugin("sluice", attachEnv("CHECK", cid, netns), confJSON("1.1.0", map[string]interface{}{"mtu": 1450, "prevResult": added})), false)
	})
	s.run("spec 1.1.0: STATUS succeeds with no output", func() error {
		return expectOK(execPlugin("sluice", map[string]string{"CNI_COMMAND": "STATUS", "CNI_PATH": *binDir}, confJSON("1.1.0", nil)), false)
	})
	s.run("spec 1.1.0: GC keeps a valid attachment", func() error {
		valid := []map[string]string{{"containerID": cid, "ifname": "eth0"}}
		if err := expectOK(execPlugin("sluice", map[string]string{"CNI_COMMAND": "GC", "CNI_PATH": *binDir}, confJSON("1.1.0", map[string]interface{}{"cni.dev/valid-attachments": valid})), false); err != nil {
			return err
		}
		return expectOK(execPlugin("sluice", attachEnv("CHECK", cid, netns), confJSON("1.1.0", map[string]interface{}{"mtu": 1450, "prevResult": added})), false)
	})
	s.run("spec 1.1.0: GC releases an attachment that is no longer valid", func() error {
		var host string
		if ifs, ok := added["interfaces"].([]interface{}); ok && len(ifs) > 0 {
			host, _ = ifs[0].(map[string]interface{})["name"].(string)
		}
		if err := expectOK(execPlugin("sluice", map[string]string{"CNI_COMMAND": "GC", "CNI_PATH": *binDir}, confJSON("1.1.0", map[string]interface{}{"cni.dev/valid-attachments": []interface{}{}})), false); err != nil {
			return err
		}
		if host == "" || linkExists(host) {
			return fmt.Errorf("host veth %q survived GC", host)
		}
		var a attachment
		if err := agentGet("/v1/endpoints/"+cid+"/eth0", &a); err != nil {
			return err
		}
		if a.Endpoint != nil || len(a.Addresses) != 0 {
			return fmt.Errorf("agent still holds %v / %v", a.Endpoint, a.Addresses)
		}
		return nil
	})
	s.run("spec 1.1.0: DEL after GC succeeds", func() error {
		return expectOK(execPlugin("sluice", attachEnv("DEL", cid, netns), confJSON("1.1.0", nil)), false)
	})
	for _, v := range allVersions {
		v := v
		s.run("spec: VERSION for a "+v+" config lists every supported version", func() error {
			r := execPlugin("sluice", map[string]string{"CNI_COMMAND": "VERSION"}, `{"cniVersion":"`+v+`"}`)
			if err := expectOK(r, true); err != nil {
				return err
			}
			got := fmt.Sprint(r.json["supportedVersions"])
			if r.json["cniVersion"] != v || got != fmt.Sprint([]interface{}{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}) {
				return fmt.Errorf("VERSION printed %s", r.stdout)
			}
			return nil
		})
	}
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0"} {
		v := v
		s.run("spec: STATUS and GC in a "+v+" config fail with code 1", func() error {
			if err := expectError(execPlugin("sluice", map[string]string{"CNI_COMMAND": "STATUS", "CNI_PATH": *binDir}, confJSON(v, nil)), 1); err != nil {
				return fmt.Errorf("STATUS: %v", err)
			}
			return expectError(execPlugin("sluice", map[string]string{"CNI_COMMAND": "GC", "CNI_PATH": *binDir}, confJSON(v, map[string]interface{}{"cni.dev/valid-attachments": []interface{}{}})), 1)
		})
	}
	for _, v := range []string{"0.3.0", "0.3.1"} {
		v := v
		s.run("spec: CHECK in a "+v+" config fails with code 1", func() error {
			return expectError(execPlugin("sluice", attachEnv("CHECK", newContainerID(), netns), confJSON(v, nil)), 1)
		})
	}
}

// badInputs checks that each bad input gets its spec code and leaves no veth.
func (s *suite) badInputs() {
	netns := s.newNetns()
	mnt := "/proc/self/ns/mnt"
	type bad struct {
		what  string
		env   map[string]string
		stdin string
		code  int
	}
	cid := newContainerID()
	env := func(over map[string]string) map[string]string {
		e := attachEnv("ADD", cid, netns)
		for k, v := range over {
			if v == "" {
				delete(e, k)
			} else {
				e[k] = v
			}
		}
		return e
	}
	cases := []bad{
		{"stdin not JSON", env(nil), "{not json", 6},
		{"empty stdin", env(nil), "", 6},
		{"unsupported cniVersion", env(nil), `{"cniVersion":"0.2.0","name":"n","type":"sluice"}`, 1},
		{"missing name", env(nil), `{"cniVersion":"1.0.0","type":"sluice"}`, 7},
		{"mtu of the wrong type", env(nil), confJSON("1.0.0", map[string]interface{}{"mtu": "1500"}), 7},
		{"dns of the wrong type", env(nil), confJSON("1.0.0", map[string]interface{}{"dns": "8.8.8.8"}), 7},
		{"malformed prevResult", env(nil), confJSON("1.0.0", map[string]interface{}{"prevResult": map[string]interface{}{"ips": []interface{}{map[string]interface{}{"address": "nonsense"}}}}), 7},
		{"missing CNI_CONTAINERID", env(map[string]string{"CNI_CONTAINERID": ""}), confJSON("1.0.0", nil), 4},
		{"container ID with a slash", env(map[string]string{"CNI_CONTAINERID": "../../etc"}), confJSON("1.0.0", nil), 4},
		{"ifname with a slash", env(map[string]string{"CNI_IFNAME": "eth0/../x"}), confJSON("1.0.0", nil), 4},
		{"ifname longer than 15 bytes", env(map[string]string{"CNI_IFNAME": "eth0123456789abc"}), confJSON("1.0.0", nil), 4},
		{"netns that is a mount namespace", env(map[string]string{"CNI_NETNS": mnt}), confJSON("1.0.0", nil), 4},
		{"netns that is a regular file", env(map[string]string{"CNI_NETNS": "/etc/hostname"}), confJSON("1.0.0", nil), 4},
		{"netns that does not exist", env(map[string]string{"CNI_NETNS": "/var/run/netns/no-such-netns"}), confJSON("1.0.0", nil), 4},
		{"unknown CNI_COMMAND", env(map[string]string{"CNI_COMMAND": "FROB"}), confJSON("1.0.0", nil), 4},
		{"agent not running", env(nil), confJSON("1.0.0", map[string]interface{}{"socket": "/run/sluice/conformance-nobody.sock"}), 11},
		{"CHECK of an unknown container", env(map[string]string{"CNI_COMMAND": "CHECK"}), confJSON("1.0.0", nil), 3},
		{"GC without valid-attachments", env(map[string]string{"CNI_COMMAND": "GC"}), confJSON("1.1.0", nil), 7},
	}
	for _, c := range cases {
		c := c
		s.run("bad input: "+c.what+" gets code "+fmt.Sprint(c.code)+" and leaves nothing", func() error {
			if err := expectError(execPlugin("sluice", c.env, c.stdin), c.code); err != nil {
				return err
			}
			out, _ := exec.Command("ip", "-n", filepath.Base(netns), "-o", "link", "show").CombinedOutput()
			if strings.Contains(string(out), "eth0") {
				return fmt.Errorf("an eth0 was left in the pod netns")
			}
			var a attachment
			if err := agentGet("/v1/endpoints/"+cid+"/eth0", &a); err != nil {
				return err
			}
			if a.Endpoint != nil || len(a.Addresses) != 0 {
				return fmt.Errorf("agent holds %v / %v", a.Endpoint, a.Addresses)
			}
			return nil
		})
	}
}

func main() {
	flag.Parse()
	if *binDir == "" || *socket == "" || *netnsPrefix == "" || *cacheDir == "" || *delQueueDir == "" || *logFile == "" {
		fmt.Fprintln(os.Stderr, "usage: driver -bin-dir DIR -socket PATH -del-queue-dir DIR -log-file FILE -netns-prefix P -cache-dir DIR")
		os.Exit(2)
	}
	s := &suite{}
	defer s.cleanup()
	cni := libcni.NewCNIConfigWithCacheDir([]string{*binDir}, *cacheDir, nil)
	ctx := context.Background()

	s.run("libcni: VERSION lists every version sluice supports", func() error {
		info, err := cni.GetVersionInfo(ctx, "sluice")
		if err != nil {
			return err
		}
		if got := fmt.Sprint(info.SupportedVersions()); got != fmt.Sprint(allVersions) {
			return fmt.Errorf("supported versions %s", got)
		}
		return nil
	})
	for _, v := range libcniVersions {
		v := v
		alone := conflist(v, sluicePlugin(nil))
		s.run("libcni "+v+": ValidateNetworkList accepts the conflist", func() error {
			_, err := cni.ValidateNetworkList(ctx, alone)
			return err
		})
		s.lifecycle(cni, v, "sluice alone", alone, 0)
		// sluice after loopback (prevResult consumed and extended), then bandwidth (prevResult passed on).
		chained := conflist(v,
			map[string]interface{}{"type": "loopback"},
			sluicePlugin(nil),
			map[string]interface{}{"type": "bandwidth", "capabilities": map[string]bool{"bandwidth": true}},
		)
		s.run("libcni "+v+": ValidateNetworkList accepts the chain loopback, sluice, bandwidth", func() error {
			_, err := cni.ValidateNetworkList(ctx, chained)
			return err
		})
		s.lifecycle(cni, v, "chain loopback, sluice, bandwidth", chained, 1)
		// A single network configuration (not a list), as older runtimes load it.
		s.run("libcni "+v+": a single .conf ADD and DEL", func() error {
			b, _ := json.Marshal(func() map[string]interface{} {
				c := sluicePlugin(nil)
				c["cniVersion"] = v
				c["name"] = "sluice-conformance"
				return c
			}())
			conf, err := libcni.ConfFromBytes(b)
			if err != nil {
				return err
			}
			netns := s.newNetns()
			rt := runtimeConf(newContainerID(), netns)
			r, err := cni.AddNetwork(ctx, conf, rt)
			if err != nil {
				return err
			}
			res, err := current.NewResultFromResult(r)
			if err != nil {
				return err
			}
			if err := verifyResult(res, netns, 0); err != nil {
				return err
			}
			return cni.DelNetwork(ctx, conf, rt)
		})
	}
	s.spec110()
	s.badInputs()
	fmt.Printf("%d passed, %d failed\n", s.passed, s.failed)
	if s.failed > 0 {
		s.cleanup()
		os.Exit(1)
	}
}
