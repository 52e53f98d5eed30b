// Package kmstest is a test KMS: an HTTP server on 127.0.0.1 that speaks the
// AWS JSON 1.1 protocol (X-Amz-Target: TrentService.*) closely enough for the
// real aws-sdk-go-v2 KMS client, with KMS's key-state rules and error bodies
// (DisabledException, KMSInvalidStateException, NotFoundException,
// AccessDeniedException, InvalidCiphertextException, IncorrectKeyException,
// ThrottlingException), backing-key rotation, aliases that can be repointed
// (CreateAlias, UpdateAlias, DeleteAlias), fault injection (latency,
// throttling, connection refused, denied actions) and call counting.
//
// One Server serves one region. StartCluster starts one server per region
// (each on its own 127.0.0.1 port) that know each other: multi-Region keys
// (CreateKey with MultiRegion, ReplicateKey) share their key material across
// the cluster, so a ciphertext made in one region decrypts in another, while
// each region's key keeps its own state (enable/disable/deletion) as in AWS;
// DescribeKey returns their MultiRegionConfiguration. Taking one server down
// (SetDown) simulates a regional outage. ARNs are checked against the
// server's region and account: a key or alias ARN of another region is not
// found, as in AWS.
//
// It exists because moto's key-state handling is incomplete (a disabled key
// still decrypts); revocation semantics need a server that behaves as AWS
// does. It is test code: keys are in memory and nothing is secret.
package kmstest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/logstore/logstore/keys"
)

// Account is the AWS account id of every key.
const Account = "111122223333"

// Server is a running test KMS for one region.
type Server struct {
	Region string

	// mu guards every field below; the servers of a Cluster share one mutex,
	// so a call may read or change the related keys of other regions.
	mu        *sync.Mutex
	cluster   *Cluster // nil for a standalone server
	addr      string
	ln        net.Listener
	srv       *http.Server
	keys      map[string]*key // by key id
	aliases   map[string]string
	calls     map[string]int
	latency   time.Duration
	throttleN int
	outage    bool
	denied    map[string]bool
	conns     map[net.Conn]struct{}
}

type key struct {
	id          string
	arn         string
	state       string // Enabled, Disabled, PendingDeletion
	spec        string
	multiRegion bool
	created     time.Time
	deletion    time.Time
	rotation    bool
	backing     [][]byte // backing key versions; the last encrypts (single-Region keys)
	region      string
	mr          *mrGroup // multi-Region keys: shared by the related keys of every region
}

// mrGroup is a multi-Region key: one key id, one key material (rotated
// together) and one key per region, each with its own state.
type mrGroup struct {
	id      string
	primary string          // region of the primary key
	backing [][]byte        // shared backing key versions; the last encrypts
	members map[string]*key // by region
}

// versions returns the backing key versions of k (shared for multi-Region keys).
func (k *key) versions() *[][]byte {
	if k.mr != nil {
		return &k.mr.backing
	}
	return &k.backing
}

// Cluster is a set of test KMS servers, one per region, that share
// multi-Region keys.
type Cluster struct {
	servers map[string]*Server
	regions []string
}

// StartCluster starts one server per region, each on its own free port of
// 127.0.0.1.
func StartCluster(regions ...string) (*Cluster, error) {
	c := &Cluster{servers: map[string]*Server{}}
	mu := &sync.Mutex{} // one lock for the whole cluster
	for _, r := range regions {
		if _, dup := c.servers[r]; dup {
			c.Close()
			return nil, fmt.Errorf("kmstest: region %s given twice", r)
		}
		s := newServer(r, mu)
		s.cluster = c
		if err := s.listen("127.0.0.1:0"); err != nil {
			c.Close()
			return nil, err
		}
		c.servers[r] = s
		c.regions = append(c.regions, r)
	}
	return c, nil
}

// Server returns the server of region (nil when the cluster has none).
func (c *Cluster) Server(region string) *Server { return c.servers[region] }

// Regions lists the cluster's regions in the order given to StartCluster.
func (c *Cluster) Regions() []string { return append([]string(nil), c.regions...) }

// Close stops every server.
func (c *Cluster) Close() {
	for _, s := range c.servers {
		s.Close()
	}
}

// Start starts a server for region on a free port of 127.0.0.1.
func Start(region string) (*Server, error) {
	s := newServer(region, &sync.Mutex{})
	if err := s.listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return s, nil
}

func newServer(region string, mu *sync.Mutex) *Server {
	return &Server{Region: region, mu: mu, keys: map[string]*key{}, aliases: map[string]string{}, calls: map[string]int{},
		denied: map[string]bool{}, conns: map[net.Conn]struct{}{}}
}

func (s *Server) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(c net.Conn, st http.ConnState) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if st == http.StateClosed || st == http.StateHijacked {
				delete(s.conns, c)
			} else {
				s.conns[c] = struct{}{}
			}
		}}
	s.mu.Lock()
	s.ln, s.srv, s.addr = ln, srv, ln.Addr().String()
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// URL is the endpoint to give the SDK (BaseEndpoint or AWS_ENDPOINT_URL_KMS).
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "http://" + s.addr
}

// Close stops the server.
func (s *Server) Close() {
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// SetDown makes the server refuse connections (true) or accept them again on
// the same address (false).
func (s *Server) SetDown(down bool) error {
	s.mu.Lock()
	srv, addr := s.srv, s.addr
	s.mu.Unlock()
	if down {
		if srv != nil {
			s.mu.Lock()
			s.srv = nil
			s.mu.Unlock()
			return srv.Close()
		}
		return nil
	}
	if srv != nil {
		return nil
	}
	var err error
	for i := 0; i < 50; i++ { // the port may linger briefly
		if err = s.listen(addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return err
}

// SetLatency delays every call by d.
func (s *Server) SetLatency(d time.Duration) { s.mu.Lock(); s.latency = d; s.mu.Unlock() }

// SetOutage makes every call fail with HTTP 500 KMSInternalException (true),
// the other face of a regional outage than refused connections (SetDown),
// or serve again (false).
func (s *Server) SetOutage(on bool) { s.mu.Lock(); s.outage = on; s.mu.Unlock() }

// Throttle makes the next n calls fail with ThrottlingException.
func (s *Server) Throttle(n int) { s.mu.Lock(); s.throttleN = n; s.mu.Unlock() }

// Deny makes calls of action (e.g. "Decrypt") fail with AccessDeniedException;
// Deny(action, false) allows it again.
func (s *Server) Deny(action string, deny bool) { s.mu.Lock(); s.denied[action] = deny; s.mu.Unlock() }

// Calls returns how many calls of op (e.g. "GenerateDataKey") were served.
func (s *Server) Calls(op string) int { s.mu.Lock(); defer s.mu.Unlock(); return s.calls[op] }

// TotalCalls returns every call counted, by operation.
func (s *Server) TotalCalls() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.calls {
		out[k] = v
	}
	return out
}

// ResetCalls zeroes the counters.
func (s *Server) ResetCalls() { s.mu.Lock(); s.calls = map[string]int{}; s.mu.Unlock() }

// CreateKey makes an enabled symmetric key directly (no HTTP) and returns its ARN.
func (s *Server) CreateKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createKeyLocked("SYMMETRIC_DEFAULT", false, "").arn
}

// CreateMultiRegionKey makes an enabled symmetric multi-Region primary key
// ("mrk-...") directly and returns its ARN; ReplicateKey (or Replicate)
// adds related keys in other regions of the cluster.
func (s *Server) CreateMultiRegionKey() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.createKeyLocked("SYMMETRIC_DEFAULT", true, "").arn
}

// Replicate makes a replica of the multi-Region key id in region (a server
// of the same cluster), as ReplicateKey does, and returns the replica's ARN.
func (s *Server) Replicate(id, region string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k, aerr := s.replicateLocked(id, region)
	if aerr != nil {
		return "", fmt.Errorf("kmstest: %s: %s", aerr.code, aerr.msg)
	}
	return k.arn, nil
}

// CreateKeyWithID makes a key with a chosen id, e.g. a multi-Region key id
// ("mrk-...") shared by replicas in several standalone servers, with the same
// material (copied: later rotations are not shared; use StartCluster and
// Replicate for keys that stay related).
func (s *Server) CreateKeyWithID(id string, material []byte) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.createKeyLocked("SYMMETRIC_DEFAULT", strings.HasPrefix(id, "mrk-"), id)
	if material != nil {
		*k.versions() = [][]byte{append([]byte(nil), material...)}
	}
	return k.arn
}

// KeyMaterial returns the current backing key of id (to build replicas).
func (s *Server) KeyMaterial(id string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k := s.keys[s.resolveLocked(id)]; k != nil {
		v := *k.versions()
		return append([]byte(nil), v[len(v)-1]...)
	}
	return nil
}

// DeleteNow removes a key immediately, as if its deletion window had passed.
func (s *Server) DeleteNow(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kid := s.resolveLocked(id)
	if k := s.keys[kid]; k != nil && k.mr != nil {
		delete(k.mr.members, s.Region)
	}
	delete(s.keys, kid)
}

// UpdateAlias points alias (e.g. "alias/dbg") at another key directly, as
// the UpdateAlias operation does.
func (s *Server) UpdateAlias(alias, keyID string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, aerr := s.dispatchLocked("UpdateAlias", mustJSON(request{AliasName: alias, TargetKeyId: keyID})); aerr != nil {
		return fmt.Errorf("kmstest: %s: %s", aerr.code, aerr.msg)
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (s *Server) createKeyLocked(spec string, multi bool, id string) *key {
	if id == "" {
		id = newUUID()
		if multi {
			id = "mrk-" + strings.ReplaceAll(newUUID(), "-", "")
		}
	}
	m := make([]byte, 32)
	_, _ = rand.Read(m)
	k := &key{id: id, arn: s.keyARN(id), state: "Enabled", spec: spec, multiRegion: multi,
		created: time.Now().UTC(), region: s.Region}
	if multi {
		k.mr = &mrGroup{id: id, primary: s.Region, backing: [][]byte{m}, members: map[string]*key{s.Region: k}}
	} else {
		k.backing = [][]byte{m}
	}
	s.keys[id] = k
	return k
}

func (s *Server) keyARN(id string) string {
	return fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", s.Region, Account, id)
}

// replicateLocked makes the replica of the multi-Region primary key ref in
// region. Caller holds s.mu (shared by the cluster).
func (s *Server) replicateLocked(ref, region string) (*key, *apiError) {
	k := s.keys[s.resolveLocked(ref)]
	switch {
	case k == nil:
		return nil, errf("NotFoundException", "Key '%s' does not exist", ref)
	case k.mr == nil:
		return nil, errf("UnsupportedOperationException", "%s is not a multi-Region key", k.arn)
	case k.mr.primary != s.Region:
		return nil, errf("UnsupportedOperationException", "%s is not a primary key: replicate from %s", k.arn, k.mr.primary)
	case region == s.Region:
		return nil, errf("ValidationException", "ReplicaRegion must differ from the primary key's region")
	}
	var dst *Server
	if s.cluster != nil {
		dst = s.cluster.servers[region]
	}
	if dst == nil {
		return nil, errf("ValidationException", "region %s is not served by this test KMS cluster", region)
	}
	if _, ok := k.mr.members[region]; ok {
		return nil, errf("AlreadyExistsException", "%s already has a replica in %s", k.arn, region)
	}
	r := &key{id: k.id, arn: dst.keyARN(k.id), state: "Enabled", spec: k.spec, multiRegion: true,
		created: time.Now().UTC(), region: region, mr: k.mr}
	dst.keys[k.id] = r
	k.mr.members[region] = r
	return r, nil
}

// resolveLocked maps a key id, key ARN, alias name or alias ARN to a key id
// ("" when it names nothing here: an ARN of another region or account).
func (s *Server) resolveLocked(ref string) string {
	if strings.HasPrefix(ref, "arn:") {
		parts := strings.SplitN(ref, ":", 6)
		if len(parts) != 6 || parts[2] != "kms" || parts[3] != s.Region || parts[4] != Account {
			return ""
		}
		if id, ok := strings.CutPrefix(parts[5], "key/"); ok {
			return id
		}
		if !strings.HasPrefix(parts[5], "alias/") {
			return ""
		}
		ref = parts[5]
	}
	if strings.HasPrefix(ref, "alias/") {
		return s.aliases[ref]
	}
	return ref
}

// apiError is a KMS error response.
type apiError struct {
	code   string
	msg    string
	status int // default 400
}

func errf(code, format string, args ...any) *apiError {
	return &apiError{code: code, msg: fmt.Sprintf(format, args...)}
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	op, ok := strings.CutPrefix(target, "TrentService.")
	if r.Method != http.MethodPost || !ok {
		writeErr(w, errf("UnknownOperationException", "unknown target %q", target))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeErr(w, errf("SerializationException", "%v", err))
		return
	}
	s.mu.Lock()
	lat := s.latency
	s.mu.Unlock()
	if lat > 0 {
		select {
		case <-time.After(lat):
		case <-r.Context().Done():
			return
		}
	}
	s.mu.Lock()
	s.calls[op]++
	var resp any
	var aerr *apiError
	switch {
	case s.outage:
		aerr = &apiError{code: "KMSInternalException", msg: "An internal error occurred", status: http.StatusInternalServerError}
	case s.throttleN > 0:
		s.throttleN--
		aerr = errf("ThrottlingException", "Rate exceeded")
	case s.denied[op]:
		aerr = errf("AccessDeniedException", "User: arn:aws:iam::%s:role/logstore is not authorized to perform: kms:%s on resource because no resource-based policy allows the kms:%s action", Account, op, op)
	default:
		resp, aerr = s.dispatchLocked(op, body)
	}
	s.mu.Unlock()
	if aerr != nil {
		writeErr(w, aerr)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	_ = json.NewEncoder(w).Encode(resp)
}

func writeErr(w http.ResponseWriter, e *apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	w.Header().Set("X-Amzn-ErrorType", e.code)
	if e.status == 0 {
		e.status = http.StatusBadRequest
	}
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": e.code, "message": e.msg})
}

type keyMetadata struct {
	AWSAccountId          string   `json:"AWSAccountId"`
	KeyId                 string   `json:"KeyId"`
	Arn                   string   `json:"Arn"`
	CreationDate          float64  `json:"CreationDate"`
	Enabled               bool     `json:"Enabled"`
	KeyUsage              string   `json:"KeyUsage"`
	KeyState              string   `json:"KeyState"`
	Origin                string   `json:"Origin"`
	KeyManager            string   `json:"KeyManager"`
	KeySpec               string   `json:"KeySpec"`
	CustomerMasterKeySpec string   `json:"CustomerMasterKeySpec"`
	EncryptionAlgorithms  []string `json:"EncryptionAlgorithms"`
	MultiRegion           bool     `json:"MultiRegion"`
	DeletionDate          *float64 `json:"DeletionDate,omitempty"`

	MultiRegionConfiguration *multiRegionConfiguration `json:"MultiRegionConfiguration,omitempty"`
}

type multiRegionKey struct {
	Arn    string `json:"Arn"`
	Region string `json:"Region"`
}

type multiRegionConfiguration struct {
	MultiRegionKeyType string           `json:"MultiRegionKeyType"` // PRIMARY or REPLICA
	PrimaryKey         *multiRegionKey  `json:"PrimaryKey,omitempty"`
	ReplicaKeys        []multiRegionKey `json:"ReplicaKeys"`
}

func (k *key) metadata() keyMetadata {
	m := keyMetadata{AWSAccountId: Account, KeyId: k.id, Arn: k.arn, CreationDate: float64(k.created.Unix()),
		Enabled: k.state == "Enabled", KeyUsage: "ENCRYPT_DECRYPT", KeyState: k.state, Origin: "AWS_KMS",
		KeyManager: "CUSTOMER", KeySpec: k.spec, CustomerMasterKeySpec: k.spec, MultiRegion: k.multiRegion}
	if k.spec == "SYMMETRIC_DEFAULT" {
		m.EncryptionAlgorithms = []string{"SYMMETRIC_DEFAULT"}
	} else {
		m.KeyUsage = "SIGN_VERIFY"
	}
	if !k.deletion.IsZero() {
		d := float64(k.deletion.Unix())
		m.DeletionDate = &d
	}
	if k.mr != nil {
		// As AWS: the primary and every replica, the current key included.
		c := &multiRegionConfiguration{MultiRegionKeyType: "REPLICA", ReplicaKeys: []multiRegionKey{}}
		if k.region == k.mr.primary {
			c.MultiRegionKeyType = "PRIMARY"
		}
		regions := make([]string, 0, len(k.mr.members))
		for r := range k.mr.members {
			regions = append(regions, r)
		}
		sort.Strings(regions)
		for _, r := range regions {
			ref := multiRegionKey{Arn: k.mr.members[r].arn, Region: r}
			if r == k.mr.primary {
				c.PrimaryKey = &ref
			} else {
				c.ReplicaKeys = append(c.ReplicaKeys, ref)
			}
		}
		m.MultiRegionConfiguration = c
	}
	return m
}

type request struct {
	KeyId                        string            `json:"KeyId"`
	KeySpec                      string            `json:"KeySpec"`
	NumberOfBytes                int               `json:"NumberOfBytes"`
	EncryptionContext            map[string]string `json:"EncryptionContext"`
	CiphertextBlob               []byte            `json:"CiphertextBlob"`
	Plaintext                    []byte            `json:"Plaintext"`
	SourceEncryptionContext      map[string]string `json:"SourceEncryptionContext"`
	SourceKeyId                  string            `json:"SourceKeyId"`
	DestinationKeyId             string            `json:"DestinationKeyId"`
	DestinationEncryptionContext map[string]string `json:"DestinationEncryptionContext"`
	PendingWindowInDays          int               `json:"PendingWindowInDays"`
	MultiRegion                  bool              `json:"MultiRegion"`
	AliasName                    string            `json:"AliasName"`
	TargetKeyId                  string            `json:"TargetKeyId"`
	ReplicaRegion                string            `json:"ReplicaRegion"`
}

// usableLocked returns the key for a cryptographic operation, applying KMS's
// key-state rules.
func (s *Server) usableLocked(ref string) (*key, *apiError) {
	if ref == "" {
		return nil, errf("ValidationException", "KeyId is required")
	}
	k := s.keys[s.resolveLocked(ref)]
	if k == nil {
		return nil, errf("NotFoundException", "Key '%s' does not exist", ref)
	}
	switch k.state {
	case "Disabled":
		return nil, errf("DisabledException", "%s is disabled.", k.arn)
	case "PendingDeletion":
		return nil, errf("KMSInvalidStateException", "%s is pending deletion.", k.arn)
	}
	if k.spec != "SYMMETRIC_DEFAULT" {
		return nil, errf("InvalidKeyUsageException", "%s key usage is SIGN_VERIFY", k.arn)
	}
	return k, nil
}

// canonical binds a ciphertext to its encryption context, as KMS does.
func canonical(ec map[string]string) []byte { return keys.EncryptionContext(ec).Canonical() }

const blobMagic = "KTB1"

// seal makes a ciphertext blob: magic, key id, backing version, nonce, GCM.
func seal(k *key, pt []byte, ec map[string]string) []byte {
	backing := *k.versions()
	ver := len(backing) - 1
	blk, _ := aes.NewCipher(backing[ver])
	g, _ := cipher.NewGCM(blk)
	out := append([]byte(blobMagic), byte(len(k.id)))
	out = append(out, k.id...)
	out = binary.BigEndian.AppendUint32(out, uint32(ver))
	nonce := make([]byte, 12)
	_, _ = rand.Read(nonce)
	out = append(out, nonce...)
	return g.Seal(out, nonce, pt, canonical(ec))
}

// blobKeyID extracts the key id embedded in a blob.
func blobKeyID(b []byte) (string, []byte, bool) {
	if len(b) < 5 || string(b[:4]) != blobMagic || len(b) < 5+int(b[4])+4+12+16 {
		return "", nil, false
	}
	n := int(b[4])
	return string(b[5 : 5+n]), b[5+n:], true
}

func (s *Server) openLocked(blob []byte, ec map[string]string, keyRef string) (*key, []byte, *apiError) {
	id, rest, ok := blobKeyID(blob)
	if !ok {
		return nil, nil, errf("InvalidCiphertextException", "The ciphertext is invalid.")
	}
	if keyRef != "" {
		if want := s.resolveLocked(keyRef); want != id {
			return nil, nil, errf("IncorrectKeyException", "The key ID in the request does not identify a KMS key that can perform this operation.")
		}
	}
	k, aerr := s.usableLocked(id)
	if aerr != nil {
		return nil, nil, aerr
	}
	ver := int(binary.BigEndian.Uint32(rest))
	backing := *k.versions()
	if ver >= len(backing) {
		return nil, nil, errf("InvalidCiphertextException", "The ciphertext is invalid.")
	}
	blk, _ := aes.NewCipher(backing[ver])
	g, _ := cipher.NewGCM(blk)
	pt, err := g.Open(nil, rest[4:16], rest[16:], canonical(ec))
	if err != nil {
		return nil, nil, errf("InvalidCiphertextException", "The ciphertext is invalid.")
	}
	return k, pt, nil
}

func (s *Server) dispatchLocked(op string, body []byte) (any, *apiError) {
	var req request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, errf("SerializationException", "%v", err)
	}
	switch op {
	case "CreateKey":
		spec := req.KeySpec
		if spec == "" {
			spec = "SYMMETRIC_DEFAULT"
		}
		return map[string]any{"KeyMetadata": s.createKeyLocked(spec, req.MultiRegion, "").metadata()}, nil
	case "CreateAlias", "UpdateAlias":
		// CreateAlias refuses an existing alias; UpdateAlias repoints one
		// (AWS's manual rotation) and refuses a missing one.
		if !strings.HasPrefix(req.AliasName, "alias/") || len(req.AliasName) <= len("alias/") {
			return nil, errf("ValidationException", "alias must start with alias/")
		}
		if strings.HasPrefix(req.TargetKeyId, "alias/") || strings.Contains(req.TargetKeyId, ":alias/") {
			return nil, errf("ValidationException", "TargetKeyId must be a key id or key ARN, not an alias")
		}
		k := s.keys[s.resolveLocked(req.TargetKeyId)]
		if k == nil {
			return nil, errf("NotFoundException", "Key '%s' does not exist", req.TargetKeyId)
		}
		_, exists := s.aliases[req.AliasName]
		if op == "CreateAlias" && exists {
			return nil, errf("AlreadyExistsException", "An alias with the name arn:aws:kms:%s:%s:%s already exists", s.Region, Account, req.AliasName)
		}
		if op == "UpdateAlias" && !exists {
			return nil, errf("NotFoundException", "Alias arn:aws:kms:%s:%s:%s is not found.", s.Region, Account, req.AliasName)
		}
		s.aliases[req.AliasName] = k.id
		return map[string]any{}, nil
	case "DeleteAlias":
		if _, ok := s.aliases[req.AliasName]; !ok {
			return nil, errf("NotFoundException", "Alias arn:aws:kms:%s:%s:%s is not found.", s.Region, Account, req.AliasName)
		}
		delete(s.aliases, req.AliasName)
		return map[string]any{}, nil
	case "ReplicateKey":
		r, aerr := s.replicateLocked(req.KeyId, req.ReplicaRegion)
		if aerr != nil {
			return nil, aerr
		}
		return map[string]any{"ReplicaKeyMetadata": r.metadata(), "ReplicaPolicy": "{}", "ReplicaTags": []any{}}, nil
	case "DescribeKey":
		k := s.keys[s.resolveLocked(req.KeyId)]
		if k == nil {
			return nil, errf("NotFoundException", "Key '%s' does not exist", req.KeyId)
		}
		return map[string]any{"KeyMetadata": k.metadata()}, nil
	case "GenerateDataKey":
		k, aerr := s.usableLocked(req.KeyId)
		if aerr != nil {
			return nil, aerr
		}
		n := req.NumberOfBytes
		switch req.KeySpec {
		case "AES_256":
			n = 32
		case "AES_128":
			n = 16
		}
		if n <= 0 || n > 1024 {
			return nil, errf("ValidationException", "KeySpec or NumberOfBytes is required")
		}
		pt := make([]byte, n)
		_, _ = rand.Read(pt)
		return map[string]any{"KeyId": k.arn, "Plaintext": pt, "CiphertextBlob": seal(k, pt, req.EncryptionContext)}, nil
	case "Encrypt":
		k, aerr := s.usableLocked(req.KeyId)
		if aerr != nil {
			return nil, aerr
		}
		return map[string]any{"KeyId": k.arn, "CiphertextBlob": seal(k, req.Plaintext, req.EncryptionContext), "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}, nil
	case "Decrypt":
		k, pt, aerr := s.openLocked(req.CiphertextBlob, req.EncryptionContext, req.KeyId)
		if aerr != nil {
			return nil, aerr
		}
		return map[string]any{"KeyId": k.arn, "Plaintext": pt, "EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}, nil
	case "ReEncrypt":
		src, pt, aerr := s.openLocked(req.CiphertextBlob, req.SourceEncryptionContext, req.SourceKeyId)
		if aerr != nil {
			return nil, aerr
		}
		dst, aerr := s.usableLocked(req.DestinationKeyId)
		if aerr != nil {
			return nil, aerr
		}
		return map[string]any{"KeyId": dst.arn, "SourceKeyId": src.arn, "CiphertextBlob": seal(dst, pt, req.DestinationEncryptionContext)}, nil
	case "EnableKey", "DisableKey":
		k := s.keys[s.resolveLocked(req.KeyId)]
		if k == nil {
			return nil, errf("NotFoundException", "Key '%s' does not exist", req.KeyId)
		}
		if k.state == "PendingDeletion" {
			return nil, errf("KMSInvalidStateException", "%s is pending deletion.", k.arn)
		}
		k.state = map[string]string{"EnableKey": "Enabled", "DisableKey": "Disabled"}[op]
		return map[string]any{}, nil
	case "ScheduleKeyDeletion":
		k := s.keys[s.resolveLocked(req.KeyId)]
		if k == nil {
			return nil, errf("NotFoundException", "Key '%s' does not exist", req.KeyId)
		}
		if k.state == "PendingDeletion" {
			return nil, errf("KMSInvalidStateException", "%s is pending deletion.", k.arn)
		}
		days := req.PendingWindowInDays
		if days == 0 {
			days = 30
		}
		if days < 7 || days > 30 {
			return nil, errf("ValidationException", "PendingWindowInDays must be between 7 and 30")
		}
		k.state, k.deletion = "PendingDeletion", time.Now().Add(time.Duration(days)*24*time.Hour).UTC()
		return map[string]any{"KeyId": k.arn, "DeletionDate": float64(k.deletion.Unix()), "KeyState": k.state, "PendingWindowInDays": days}, nil
	case "CancelKeyDeletion":
		k := s.keys[s.resolveLocked(req.KeyId)]
		if k == nil {
			return nil, errf("NotFoundException", "Key '%s' does not exist", req.KeyId)
		}
		if k.state != "PendingDeletion" {
			return nil, errf("KMSInvalidStateException", "%s is not pending deletion.", k.arn)
		}
		k.state, k.deletion = "Disabled", time.Time{} // as AWS: cancelled keys come back disabled
		return map[string]any{"KeyId": k.arn}, nil
	case "EnableKeyRotation":
		k, aerr := s.usableLocked(req.KeyId)
		if aerr != nil {
			return nil, aerr
		}
		k.rotation = true
		return map[string]any{}, nil
	case "RotateKeyOnDemand":
		k, aerr := s.usableLocked(req.KeyId)
		if aerr != nil {
			return nil, aerr
		}
		if k.mr != nil && k.mr.primary != s.Region {
			return nil, errf("UnsupportedOperationException", "%s is a replica key: rotate its primary key in %s", k.arn, k.mr.primary)
		}
		m := make([]byte, 32)
		_, _ = rand.Read(m)
		*k.versions() = append(*k.versions(), m) // shared by every replica of a multi-Region key
		return map[string]any{"KeyId": k.id}, nil
	}
	return nil, errf("UnknownOperationException", "operation %s is not implemented by kmstest", op)
}

// Rotate adds a new backing key version to id (what automatic rotation
// does); old ciphertexts still decrypt.
func (s *Server) Rotate(id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := s.keys[s.resolveLocked(id)]
	if k == nil {
		return errors.New("kmstest: no such key")
	}
	m := make([]byte, 32)
	_, _ = rand.Read(m)
	*k.versions() = append(*k.versions(), m)
	return nil
}
