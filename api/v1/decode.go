package v1

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
	"k8s.io/apimachinery/pkg/api/resource"
)

// Limits on one manifest file. Manifests are small hand-written files; the
// limits bound the memory and time a broken or hostile file can cost.
const (
	// MaxFileSize is the largest manifest file read, in bytes.
	MaxFileSize = 16 << 20
	// MaxDocuments is the most documents one file may hold.
	MaxDocuments = 10000
	// MaxDepth is the deepest nesting of mappings and lists.
	MaxDepth = 32
	// MaxStringLen is the longest string value, in bytes.
	MaxStringLen = 64 << 10
	// MaxItems is the most entries of one list or mapping.
	MaxItems = 100000

	maxValues      = 1 << 19 // estimated values (YAML nodes) per file
	maxKeyLen      = 1024    // longest mapping key
	maxQuantityLen = 64      // longest quantity string; real ones are a few bytes
	maxErrors      = 100     // errors reported per file before giving up
)

// isManifest reports whether a file in a directory is read as a manifest:
// its name ends in .yaml, .yml or .json, in any case.
func isManifest(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// Load reads manifests from files and directories, applies defaults and
// validates the result. A directory is read recursively in lexical order,
// taking its .yaml, .yml and .json files and skipping other files and hidden
// (dot) entries; a file named explicitly is read whatever its extension.
//
// The error is an errors.Join of one *FieldError per problem (each matches
// ErrInvalid), plus a wrapped I/O error for a path that could not be read.
// Cross-object checks run on the documents that decoded cleanly, so one typo
// does not hide every other problem; references to an object whose own
// document is broken are not reported again.
func Load(paths ...string) (*Set, error) {
	set := &Set{Origins: map[string]Origin{}}
	var errs []error // I/O errors
	var fes []*FieldError
	var broken brokenRefs
	unreadable := func(err error) {
		errs = append(errs, err)
		broken.topology = true // it may have held the nodes others refer to
	}
	for _, p := range paths {
		files, err := manifestFiles(p)
		if err != nil {
			unreadable(err)
		}
		for _, f := range files {
			data, err := readManifest(f)
			if err != nil {
				unreadable(err)
				continue
			}
			s, derrs, b := decode(f, data)
			set.Merge(s)
			fes = append(fes, derrs...)
			broken.merge(b)
		}
	}
	fes = append(fes, set.validate(broken)...)
	sortFieldErrors(fes)
	for _, fe := range fes {
		errs = append(errs, fe)
	}
	return set, errors.Join(errs...)
}

// manifestFiles lists the files to read for one path given by the user.
func manifestFiles(root string) ([]string, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("read manifests %s: %w", root, err)
	}
	if !info.IsDir() {
		return []string{root}, nil
	}
	var files []string
	err = filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != root && strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		// testdata holds fixtures and golden files, not manifests (Go's
		// convention), so a whole repository directory can be planned.
		if p != root && e.IsDir() && e.Name() == "testdata" {
			return filepath.SkipDir
		}
		if !e.IsDir() && isManifest(p) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read manifests %s: %w", root, err)
	}
	return files, nil
}

// readManifest reads one file, refusing files larger than MaxFileSize.
func readManifest(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read manifest: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read manifest %s: %w", name, err)
	}
	return data, nil
}

// Decode decodes the documents of one file: multi-document YAML separated by
// "---", or JSON (one object, or a stream of objects). Decoding is strict:
// unknown fields, duplicate keys, values of the wrong type, bad quantities,
// YAML aliases and a missing or foreign apiVersion or kind are errors. Defaults
// are applied; cross-object validation is left to Set.Validate.
//
// file names the input in errors and Origins. On error the Set holds the
// documents that decoded cleanly and the error is an errors.Join of
// *FieldError values.
func Decode(file string, data []byte) (*Set, error) {
	s, errs, _ := decode(file, data)
	return s, joinFieldErrors(errs)
}

// brokenRefs records objects whose documents failed to decode, so that
// validation does not report references to them as undefined.
type brokenRefs struct {
	tenants  map[string]bool // Tenant names
	topology bool            // some Topology (or unreadable file) may hold more nodes
}

func (b *brokenRefs) merge(o brokenRefs) {
	b.topology = b.topology || o.topology
	for t := range o.tenants {
		if b.tenants == nil {
			b.tenants = map[string]bool{}
		}
		b.tenants[t] = true
	}
}

// decode is Decode that also reports which objects were broken.
func decode(file string, data []byte) (*Set, []*FieldError, brokenRefs) {
	d := &decoder{
		file:   file,
		set:    &Set{Origins: map[string]Origin{}},
		fields: map[reflect.Type][]field{},
		seen:   map[string]int{},
	}
	d.run(data)
	d.set.ApplyDefaults()
	return d.set, d.errs, d.broken
}

// decoder decodes one file. It holds no state beyond that file.
type decoder struct {
	file   string
	set    *Set
	errs   []*FieldError
	broken brokenRefs
	fields map[reflect.Type][]field // json fields of each struct type
	seen   map[string]int           // occurrences of each object key so far

	// The document being decoded.
	doc       int
	kind      string
	name      string
	docErrors int
	positions []position
}

// position is the line where a field path was read.
type position struct {
	path string
	line int
}

// field is one JSON-visible struct field.
type field struct {
	name string
	typ  reflect.Type
}

func (d *decoder) fail(line int, path, msg, fix string) {
	d.docErrors++
	switch {
	case len(d.errs) < maxErrors:
		d.errs = append(d.errs, &FieldError{
			File: d.file, Doc: d.doc, Line: line, Kind: d.kind, Name: d.name,
			Field: path, Msg: msg, Fix: fix,
		})
	case len(d.errs) == maxErrors:
		d.errs = append(d.errs, &FieldError{
			File: d.file, Doc: d.doc, Line: line,
			Msg: fmt.Sprintf("more than %d errors; stopped reading the file", maxErrors),
			Fix: "fix the errors above and run again",
		})
	}
}

func (d *decoder) full() bool { return len(d.errs) > maxErrors }

func (d *decoder) run(data []byte) {
	if len(data) > MaxFileSize {
		d.fail(0, "", fmt.Sprintf("file is larger than %d MiB", MaxFileSize>>20),
			"split it into several files")
		return
	}
	// The parsers build a tree of the whole document first, at some 200
	// bytes a value: "[a,a,a,…]" would turn 16 MiB into gigabytes.
	if n := estimateValues(data); n > maxValues {
		d.fail(0, "", fmt.Sprintf("file has more than %d values", maxValues), "split it into several files")
		return
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	var next func() (*yaml.Node, error)
	if d.isJSON(data) {
		next = jsonDocs(data)
	} else {
		next = yamlDocs(data)
	}
	for !d.full() {
		root, err := next()
		if err == io.EOF {
			return
		}
		d.doc++
		if err != nil {
			line, msg := syntaxError(err)
			d.kind, d.name = "", ""
			d.fail(line, "", msg, "check the syntax on and just before this line")
			return
		}
		if d.doc > MaxDocuments {
			d.fail(root.Line, "", fmt.Sprintf("more than %d documents in one file", MaxDocuments),
				"split it into several files")
			return
		}
		d.document(root)
	}
}

// estimateValues bounds from above the number of values (YAML nodes) in a
// YAML or JSON text: every value but the first follows one of these bytes.
func estimateValues(data []byte) int {
	n := 1
	for _, c := range data {
		switch c {
		case ':', '?':
			n += 2 // a key and its value
		case ',', '-', '[', '{':
			n++
		}
	}
	return n
}

// isJSON reports whether data should be read as JSON: a .json file, or input
// that is one valid JSON object (JSON that YAML would also read).
func (d *decoder) isJSON(data []byte) bool {
	if strings.EqualFold(filepath.Ext(d.file), ".json") {
		return true
	}
	t := bytes.TrimSpace(data)
	return len(t) > 0 && t[0] == '{' && json.Valid(t)
}

// yamlDocs returns an iterator over the documents of a YAML stream.
func yamlDocs(data []byte) func() (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	return func() (n *yaml.Node, err error) {
		// yaml.v3 recovers its own errors but re-panics anything else; a
		// manifest must never crash the caller.
		defer func() {
			if r := recover(); r != nil {
				n, err = nil, fmt.Errorf("yaml: cannot parse: %v", r)
			}
		}()
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			return nil, err
		}
		return &doc, nil
	}
}

// syntaxError turns a parser error into a line and a message.
func syntaxError(err error) (int, string) {
	if se, ok := errors.AsType[*jsonSyntaxError](err); ok {
		return se.line, "invalid JSON: " + se.msg
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, text, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				return line, "invalid YAML: " + text
			}
		}
	}
	return 0, "invalid YAML: " + msg
}

// document decodes one document into the set.
func (d *decoder) document(doc *yaml.Node) {
	d.kind, d.name, d.docErrors, d.positions = "", "", 0, d.positions[:0]
	root := doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return
		}
		root = doc.Content[0]
	}
	if isNull(root) {
		return // an empty document, e.g. after a trailing "---"
	}
	if root.Kind != yaml.MappingNode {
		d.fail(root.Line, "", fmt.Sprintf("document is %s, not a mapping", describe(root)),
			"write each document as a mapping with apiVersion, kind, metadata and spec")
		return
	}

	apiVersion := scalarAt(root, "apiVersion")
	kind := scalarAt(root, "kind")
	name := scalarAt(root, "metadata", "name")
	tenant := scalarAt(root, "metadata", "tenant")
	d.kind, d.name = kind, displayName(name)
	if (kind == KindWorkload || kind == KindSecret || kind == KindVolume) && tenant != "" {
		d.name = displayName(tenant + "/" + name)
	}

	var typ reflect.Type
	switch kind {
	case KindTopology:
		typ = reflect.TypeFor[Topology]()
	case KindTenant:
		typ = reflect.TypeFor[Tenant]()
	case KindWorkload:
		typ = reflect.TypeFor[Workload]()
	case KindPolicy:
		typ = reflect.TypeFor[Policy]()
	case KindSecret:
		typ = reflect.TypeFor[Secret]()
	case KindVolume:
		typ = reflect.TypeFor[Volume]()
	}
	line := keyLine(root, "kind", root.Line)
	switch {
	case kind == "":
		d.kind = ""
		d.fail(line, "kind", "missing", "add kind: one of "+strings.Join(kinds(), ", "))
	case typ == nil:
		d.kind = ""
		fix := "use one of " + strings.Join(kinds(), ", ")
		if s := closest(kind, kinds()); s != "" {
			fix = fmt.Sprintf("did you mean %q?", s)
		}
		d.fail(line, "kind", fmt.Sprintf("%q is not a rung.dev/v1 kind", truncate(kind)), fix)
	}
	switch line := keyLine(root, "apiVersion", root.Line); apiVersion {
	case APIVersion:
	case "":
		d.fail(line, "apiVersion", "missing", "add apiVersion: "+APIVersion)
	default:
		d.fail(line, "apiVersion", fmt.Sprintf("%q is not supported", truncate(apiVersion)),
			"use apiVersion: "+APIVersion)
	}

	var value any
	if typ != nil {
		value = d.value(root, typ, "", 0)
	}
	if d.docErrors > 0 {
		if kind == KindTenant {
			if d.broken.tenants == nil {
				d.broken.tenants = map[string]bool{}
			}
			d.broken.tenants[name] = true
		}
		if kind == KindTopology || typ == nil {
			d.broken.topology = true
		}
		return
	}
	d.add(typ, value, root.Line)
}

// add converts a checked document to its Go type and appends it to the set.
func (d *decoder) add(typ reflect.Type, value any, line int) {
	data, err := json.Marshal(value)
	if err == nil {
		obj := reflect.New(typ)
		// The walk in value has already checked every field, so this cannot
		// fail on user input; it gives the object the types' own decoding.
		// data is JSON the walk made (exact field names, no duplicates):
		// read as JSON, not converted through YAML once more (that was
		// most of an API apply's decoding time).
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err = dec.Decode(obj.Interface()); err == nil {
			key := ""
			switch o := obj.Interface().(type) {
			case *Topology:
				d.set.Topologies = append(d.set.Topologies, *o)
				key = objectKey(KindTopology, "", o.Metadata.Name)
			case *Tenant:
				d.set.Tenants = append(d.set.Tenants, *o)
				key = objectKey(KindTenant, "", o.Metadata.Name)
			case *Workload:
				d.set.Workloads = append(d.set.Workloads, *o)
				key = objectKey(KindWorkload, o.Metadata.Tenant, o.Metadata.Name)
			case *Policy:
				d.set.Policies = append(d.set.Policies, *o)
				key = objectKey(KindPolicy, "", o.Metadata.Name)
			case *Secret:
				d.set.Secrets = append(d.set.Secrets, *o)
				key = objectKey(KindSecret, o.Metadata.Tenant, o.Metadata.Name)
			case *Volume:
				d.set.Volumes = append(d.set.Volumes, *o)
				key = objectKey(KindVolume, o.Metadata.Tenant, o.Metadata.Name)
			}
			d.seen[key]++
			key = nthKey(key, d.seen[key])
			d.set.Origins[key] = Origin{File: d.file, Doc: d.doc, Line: line}
			for _, p := range d.positions {
				d.set.Origins[fieldKey(key, p.path)] = Origin{File: d.file, Doc: d.doc, Line: p.line}
			}
			return
		}
	}
	d.fail(line, "", fmt.Sprintf("cannot decode: %v", err), "report this as a bug in rung")
}

// value checks node n against Go type t and returns its JSON form. Errors are
// recorded with their lines; the returned value is then meaningless.
func (d *decoder) value(n *yaml.Node, t reflect.Type, path string, depth int) any {
	if d.full() {
		return nil
	}
	if depth > MaxDepth {
		d.fail(n.Line, path, fmt.Sprintf("nested deeper than %d levels", MaxDepth), "flatten it")
		return nil
	}
	if n.Kind == yaml.AliasNode {
		// Aliases are refused outright: they let a few bytes expand into
		// gigabytes ("billion laughs"), they make one value appear at several
		// lines, and manifests are short enough to write every value out.
		d.fail(n.Line, path, fmt.Sprintf("YAML alias *%s is not allowed in manifests", truncate(n.Value)),
			"write the value out in full instead of using & and *")
		return nil
	}
	if isNull(n) {
		return nil
	}
	if t == reflect.TypeFor[resource.Quantity]() {
		return d.quantity(n, path)
	}
	switch t.Kind() {
	case reflect.Pointer:
		return d.value(n, t.Elem(), path, depth)
	case reflect.Struct:
		return d.structValue(n, t, path, depth)
	case reflect.Map:
		return d.mapValue(n, t, path, depth)
	case reflect.Slice:
		return d.sliceValue(n, t, path, depth)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.fail(n.Line, path, fmt.Sprintf("expected a string, got %s", describe(n)), "write a single value")
			return nil
		}
		if len(n.Value) > MaxStringLen {
			d.fail(n.Line, path, fmt.Sprintf("string is longer than %d bytes", MaxStringLen), "shorten it")
			return nil
		}
		return n.Value
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.fail(n.Line, path, fmt.Sprintf("expected true or false, got %s", describe(n)), "write true or false")
			return nil
		}
		return b
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		var i int64
		tag := n.ShortTag()
		if n.Kind == yaml.ScalarNode && (tag == "!!int" || tag == "!!float") &&
			isDigits(strings.TrimLeft(n.Value, "+-")) && n.Decode(&i) != nil {
			d.fail(n.Line, path, fmt.Sprintf("%s is out of range", truncate(n.Value)), "use a smaller number")
			return nil
		}
		if n.Kind != yaml.ScalarNode || tag != "!!int" || n.Decode(&i) != nil {
			d.fail(n.Line, path, fmt.Sprintf("expected a whole number, got %s", describe(n)),
				"write a whole number without quotes, e.g. 3")
			return nil
		}
		if reflect.New(t).Elem().OverflowInt(i) {
			d.fail(n.Line, path, fmt.Sprintf("%s is out of range", n.Value), "use a smaller number")
			return nil
		}
		return i
	}
	d.fail(n.Line, path, fmt.Sprintf("field of unsupported Go type %s", t), "report this as a bug in rung")
	return nil
}

func (d *decoder) quantity(n *yaml.Node, path string) any {
	fix := "use Kubernetes units such as 512Mi or 4Gi"
	if strings.HasSuffix(path, "cpu") {
		fix = "use cores such as 2, 0.5 or 500m"
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(n.Line, path, fmt.Sprintf("expected a quantity, got %s", describe(n)), fix)
		return nil
	}
	if len(n.Value) > maxQuantityLen {
		d.fail(n.Line, path, fmt.Sprintf("%q is not a quantity", truncate(n.Value)), fix)
		return nil
	}
	// ParseQuantity takes time exponential in the digits of an exponent
	// ("1e-999999999" runs for minutes), so exponents are bounded first.
	if exp, ok := quantityExponent(n.Value); ok && (exp > maxQuantityExp || exp < -maxQuantityExp) {
		d.fail(n.Line, path, fmt.Sprintf("%q is out of range", n.Value), fix)
		return nil
	}
	q, err := resource.ParseQuantity(n.Value)
	if err != nil {
		d.fail(n.Line, path, fmt.Sprintf("%q is not a quantity", n.Value), fix)
		return nil
	}
	if q.CmpInt64(maxQuantity) > 0 || q.CmpInt64(-maxQuantity) < 0 {
		d.fail(n.Line, path, fmt.Sprintf("%q is out of range", n.Value), fix)
		return nil
	}
	return n.Value
}

// Bounds on quantities: far beyond any real machine, well inside int64.
const (
	maxQuantityExp = 30
	maxQuantity    = 1 << 62
)

// quantityExponent returns the exponent of a quantity written as
// NUMBER e EXP or NUMBER E EXP, if it is written so and EXP is an integer.
func quantityExponent(s string) (int, bool) {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	if i+1 >= len(s) || s[i] != 'e' && s[i] != 'E' {
		return 0, false
	}
	exp := strings.TrimLeft(s[i+1:], "+-")
	if !isDigits(exp) {
		return 0, false
	}
	if len(exp) > 9 {
		return maxQuantityExp + 1, true
	}
	e, _ := strconv.Atoi(exp)
	return e, true
}

func (d *decoder) structValue(n *yaml.Node, t reflect.Type, path string, depth int) any {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, fmt.Sprintf("expected a mapping, got %s", describe(n)),
			"write it as a mapping of fields (name: value)")
		return nil
	}
	fields := d.structFields(t)
	out := map[string]any{}
	d.pairs(n, path, func(key string, k, v *yaml.Node) {
		i := slices.IndexFunc(fields, func(f field) bool { return f.name == key })
		if i < 0 {
			names := make([]string, len(fields))
			for i, f := range fields {
				names[i] = f.name
			}
			fix := "remove it; fields here are " + strings.Join(names, ", ")
			if s := closest(key, names); s != "" {
				fix = fmt.Sprintf("did you mean %q?", s)
			}
			d.fail(k.Line, join(path, key), "unknown field", fix)
			return
		}
		if val := d.value(v, fields[i].typ, join(path, key), depth+1); val != nil {
			out[key] = val
		}
	})
	return out
}

func (d *decoder) mapValue(n *yaml.Node, t reflect.Type, path string, depth int) any {
	if n.Kind != yaml.MappingNode {
		d.fail(n.Line, path, fmt.Sprintf("expected a mapping, got %s", describe(n)),
			"write it as a mapping of key: value pairs")
		return nil
	}
	if t.Key().Kind() != reflect.String {
		d.fail(n.Line, path, fmt.Sprintf("map with unsupported key type %s", t.Key()), "report this as a bug in rung")
		return nil
	}
	out := map[string]any{}
	d.pairs(n, path, func(key string, _, v *yaml.Node) {
		out[key] = d.value(v, t.Elem(), join(path, key), depth+1)
	})
	return out
}

// pairs calls fn for each key and value of mapping n, after checking the
// keys: plain strings, no duplicates, no merge keys.
func (d *decoder) pairs(n *yaml.Node, path string, fn func(key string, k, v *yaml.Node)) {
	if len(n.Content)/2 > MaxItems {
		d.fail(n.Line, path, fmt.Sprintf("more than %d entries", MaxItems), "split it up")
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content) && !d.full(); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || isNull(k) {
			d.fail(k.Line, path, fmt.Sprintf("mapping key is %s, not a string", describe(k)), "use plain string keys")
			continue
		}
		key := k.Value
		if len(key) > maxKeyLen {
			d.fail(k.Line, path, fmt.Sprintf("key is longer than %d bytes", maxKeyLen), "shorten it")
			continue
		}
		if key == "<<" && k.ShortTag() == "!!merge" {
			d.fail(k.Line, join(path, key), "YAML merge keys are not allowed in manifests",
				"write the fields out in full")
			continue
		}
		if first, dup := seen[key]; dup {
			d.fail(k.Line, join(path, key), fmt.Sprintf("duplicate key, first set at line %d", first),
				"remove one of them")
			continue
		}
		seen[key] = k.Line
		d.positions = append(d.positions, position{join(path, key), k.Line})
		fn(key, k, v)
	}
}

func (d *decoder) sliceValue(n *yaml.Node, t reflect.Type, path string, depth int) any {
	if n.Kind != yaml.SequenceNode {
		d.fail(n.Line, path, fmt.Sprintf("expected a list, got %s", describe(n)),
			"write it as a list: [a, b] or one \"- item\" per line")
		return nil
	}
	if len(n.Content) > MaxItems {
		d.fail(n.Line, path, fmt.Sprintf("more than %d items", MaxItems), "split it up")
		return nil
	}
	out := make([]any, 0, len(n.Content))
	for i, item := range n.Content {
		p := index(path, i)
		d.positions = append(d.positions, position{p, item.Line})
		out = append(out, d.value(item, t.Elem(), p, depth+1))
		if d.full() {
			break
		}
	}
	return out
}

// structFields lists the JSON fields of struct type t, with embedded
// (",inline") structs flattened, as encoding/json sees them.
func (d *decoder) structFields(t reflect.Type) []field {
	if fs, ok := d.fields[t]; ok {
		return fs
	}
	var fs []field
	for sf := range t.Fields() {
		tag := sf.Tag.Get("json")
		if tag == "-" || (!sf.IsExported() && !sf.Anonymous) {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			fs = append(fs, d.structFields(sf.Type)...)
			continue
		}
		if name == "" {
			name = sf.Name
		}
		fs = append(fs, field{name: name, typ: sf.Type})
	}
	d.fields[t] = fs
	return fs
}

// scalarAt returns the string at a path of keys in mapping n, or "".
func scalarAt(n *yaml.Node, keys ...string) string {
	for _, key := range keys {
		if n == nil || n.Kind != yaml.MappingNode {
			return ""
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Kind == yaml.ScalarNode && n.Content[i].Value == key {
				next = n.Content[i+1]
				break
			}
		}
		n = next
	}
	if n == nil || n.Kind != yaml.ScalarNode || isNull(n) || len(n.Value) > MaxStringLen {
		return ""
	}
	return n.Value
}

// keyLine is the line of key in mapping n, or def.
func keyLine(n *yaml.Node, key string, def int) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Kind == yaml.ScalarNode && n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return def
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, for "expected X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!str":
			return fmt.Sprintf("the string %q", truncate(n.Value))
		case "!!int", "!!float":
			return "the number " + truncate(n.Value)
		case "!!bool":
			return n.Value
		}
		return fmt.Sprintf("%q", truncate(n.Value))
	}
	return "a document"
}

// truncate shortens s for an error message.
func truncate(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func kinds() []string {
	return []string{KindTopology, KindTenant, KindWorkload, KindPolicy, KindSecret, KindVolume}
}

// Field paths: "spec.nodes[3].domains.rack"; keys that are not simple words
// are quoted: metadata.labels["app.kubernetes.io/name"].

// join appends a mapping key to a field path.
func join(path, key string) string {
	simple := key != ""
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			simple = false
			break
		}
	}
	switch {
	case !simple:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	}
	return path + "." + key
}

// index appends a list index to a field path.
func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

// parentPath drops the last element of a field path.
func parentPath(path string) string {
	last, quoted := 0, false
	for i := 0; i < len(path); i++ {
		switch c := path[i]; {
		case quoted && c == '\\':
			i++
		case quoted:
			quoted = c != '"'
		case c == '"':
			quoted = true
		case c == '.' || c == '[':
			last = i
		}
	}
	return path[:last]
}

// Keys of Set.Origins.

// objectKey is the Origins key of an object: "Kind/name", or
// "Workload/tenant/name".
func objectKey(kind, tenant, name string) string {
	if kind == KindWorkload || kind == KindSecret || kind == KindVolume {
		return kind + "/" + tenant + "/" + name
	}
	return kind + "/" + name
}

// nthKey is the key of the nth object (1-based) with one objectKey.
func nthKey(key string, n int) string {
	if n <= 1 {
		return key
	}
	return key + "#" + strconv.Itoa(n)
}

// fieldKey is the key of a field of the object with key obj.
func fieldKey(obj, path string) string { return obj + " " + path }

// Merge appends other's objects to s, keeping where each was read. Objects
// are not checked; call Validate on the result.
func (s *Set) Merge(other *Set) {
	if other == nil {
		return
	}
	if s.Origins == nil {
		s.Origins = map[string]Origin{}
	}
	// Renumber other's repeated keys to follow s's own repeats.
	count := map[string]int{}
	s.eachKey(func(key string) { count[key]++ })
	rename := map[string]string{}
	otherCount := map[string]int{}
	other.eachKey(func(key string) {
		otherCount[key]++
		count[key]++
		if n, o := count[key], otherCount[key]; n != o {
			rename[nthKey(key, o)] = nthKey(key, n)
		}
	})
	keys := make([]string, 0, len(other.Origins))
	for k := range other.Origins {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		obj, path, isField := strings.Cut(k, " ")
		nk := k
		if r, ok := rename[obj]; ok {
			nk = r
			if isField {
				nk = fieldKey(r, path)
			}
		}
		if _, taken := s.Origins[nk]; !taken {
			s.Origins[nk] = other.Origins[k]
		}
	}
	s.Topologies = append(s.Topologies, other.Topologies...)
	s.Tenants = append(s.Tenants, other.Tenants...)
	s.Workloads = append(s.Workloads, other.Workloads...)
	s.Policies = append(s.Policies, other.Policies...)
	s.Secrets = append(s.Secrets, other.Secrets...)
	s.Volumes = append(s.Volumes, other.Volumes...)
}

// eachKey calls fn with the objectKey of every object, in order.
func (s *Set) eachKey(fn func(string)) {
	for _, o := range s.Topologies {
		fn(objectKey(KindTopology, "", o.Metadata.Name))
	}
	for _, o := range s.Tenants {
		fn(objectKey(KindTenant, "", o.Metadata.Name))
	}
	for _, o := range s.Workloads {
		fn(objectKey(KindWorkload, o.Metadata.Tenant, o.Metadata.Name))
	}
	for _, o := range s.Policies {
		fn(objectKey(KindPolicy, "", o.Metadata.Name))
	}
	for _, o := range s.Secrets {
		fn(objectKey(KindSecret, o.Metadata.Tenant, o.Metadata.Name))
	}
	for _, o := range s.Volumes {
		fn(objectKey(KindVolume, o.Metadata.Tenant, o.Metadata.Name))
	}
}

// position returns where field path of the object with Origins key obj was
// read: the field's own line if known, else its nearest known ancestor's.
func (s *Set) position(obj, path string) Origin {
	for p := path; p != ""; p = parentPath(p) {
		if o, ok := s.Origins[fieldKey(obj, p)]; ok {
			return o
		}
	}
	return s.Origins[obj]
}

// JSON input. yaml.v3 reads most JSON, but not all of it (surrogate pair
// escapes, for one), so JSON files are read with encoding/json into the same
// yaml.Node tree, with lines computed from byte offsets.

// jsonSyntaxError is a JSON syntax error at a line.
type jsonSyntaxError struct {
	line int
	msg  string
}

func (e *jsonSyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// jsonDocs returns an iterator over the values of a JSON stream.
func jsonDocs(data []byte) func() (*yaml.Node, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var newlines []int
	for i, c := range data {
		if c == '\n' {
			newlines = append(newlines, i)
		}
	}
	j := &jsonReader{dec: dec, newlines: newlines}
	return func() (*yaml.Node, error) {
		if !dec.More() {
			// Token reports trailing garbage that More does not.
			if _, err := dec.Token(); err != io.EOF {
				return nil, j.syntax(err)
			}
			return nil, io.EOF
		}
		n, err := j.value(0)
		if err != nil {
			return nil, j.syntax(err)
		}
		return n, nil
	}
}

type jsonReader struct {
	dec      *json.Decoder
	newlines []int // offsets of '\n'
}

func (j *jsonReader) line() int {
	off := int(j.dec.InputOffset())
	return sort.SearchInts(j.newlines, off) + 1
}

func (j *jsonReader) syntax(err error) error {
	if err == nil {
		err = errors.New("unexpected data after the last value")
	}
	line := j.line()
	if se, ok := errors.AsType[*json.SyntaxError](err); ok {
		line = sort.SearchInts(j.newlines, int(se.Offset)) + 1
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		msg = "unexpected end of input"
	}
	return &jsonSyntaxError{line: line, msg: msg}
}

func (j *jsonReader) value(depth int) (*yaml.Node, error) {
	if depth > MaxDepth {
		return nil, fmt.Errorf("nested deeper than %d levels", MaxDepth)
	}
	tok, err := j.dec.Token()
	if err != nil {
		return nil, err
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Line: j.line()}
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			n.Kind, n.Tag = yaml.SequenceNode, "!!seq"
			for j.dec.More() {
				item, err := j.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, item)
			}
		} else {
			n.Kind, n.Tag = yaml.MappingNode, "!!map"
			for j.dec.More() {
				kt, err := j.dec.Token()
				if err != nil {
					return nil, err
				}
				key, _ := kt.(string)
				k := &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: key, Line: j.line()}
				val, err := j.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.Content = append(n.Content, k, val)
			}
		}
		if _, err := j.dec.Token(); err != nil { // the closing delimiter
			return nil, err
		}
	case string:
		n.Tag, n.Value = "!!str", v
	case json.Number:
		n.Tag, n.Value = "!!int", v.String()
		if strings.ContainsAny(n.Value, ".eE") {
			n.Tag = "!!float"
		}
	case bool:
		n.Tag, n.Value = "!!bool", strconv.FormatBool(v)
	case nil:
		n.Tag, n.Value = "!!null", "null"
	}
	return n, nil
}
