// s3_runner_flow.go - GitLab Runner's S3 cache flow, reproduced with minio-go
// v7 (the library the runner's legacy S3 cache adapter signs with), for
// tests/integration/test_s3_runner.py.
//
// Built at test time, offline, against Debian's golang-github-minio-minio-go-v7-dev:
//
//	GOPATH=/usr/share/gocode GO111MODULE=off go build -o BIN s3_runner_flow.go
//
// Usage: s3_runner_flow ENDPOINT ACCESS_KEY SECRET_KEY BUCKET COMMAND [flags] [args]
//
// ENDPOINT is host:port (plain http, path-style, as the runner's
// ServerAddress with Insecure = true).  The region is left empty, as with an
// empty BucketLocation, so minio-go asks GetBucketLocation first.
//
// Every HTTP request minio-go sends is logged on stderr as one line
// "REQ <json>" (method, path, query, the headers that tell how the body was
// signed and framed, and the response status), so that the test can check
// what travelled.  The result of the command is one JSON document on stdout.
// Failures print "ERR <json of minio.ErrorResponse>" on stderr and exit 1.
package main

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// ---- request log -------------------------------------------------------------

type logTransport struct{ next http.RoundTripper }

var loggedHeaders = []string{
	"Authorization", "X-Amz-Content-Sha256", "Content-Encoding", "Content-Length",
	"Transfer-Encoding", "X-Amz-Decoded-Content-Length", "X-Amz-Trailer", "Content-Md5",
	"Content-Type", "X-Amz-Checksum-Crc32c", "X-Amz-Checksum-Crc32", "X-Amz-Checksum-Algorithm",
	"X-Amz-Copy-Source", "X-Amz-Metadata-Directive", "Range",
}

func (t logTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	h := map[string]string{}
	for _, k := range loggedHeaders {
		if v := req.Header.Get(k); v != "" {
			if k == "Authorization" {
				v = strings.SplitN(v, " ", 2)[0] // the scheme is enough
			}
			h[k] = v
		}
	}
	if req.ContentLength > 0 {
		h["Content-Length"] = strconv.FormatInt(req.ContentLength, 10)
	}
	if len(req.TransferEncoding) > 0 {
		h["Transfer-Encoding"] = strings.Join(req.TransferEncoding, ",")
	}
	for k := range req.Header {
		if strings.HasPrefix(strings.ToLower(k), "x-amz-meta-") {
			h[k] = req.Header.Get(k)
		}
	}
	resp, err := t.next.RoundTrip(req)
	status := 0
	if resp != nil {
		status = resp.StatusCode
	}
	line, _ := json.Marshal(map[string]interface{}{
		"method": req.Method, "path": req.URL.EscapedPath(), "query": req.URL.RawQuery,
		"headers": h, "status": status,
	})
	fmt.Fprintf(os.Stderr, "REQ %s\n", line)
	return resp, err
}

// ---- helpers -------------------------------------------------------------------

func fail(err error) {
	e := minio.ToErrorResponse(err)
	line, _ := json.Marshal(map[string]interface{}{
		"code": e.Code, "message": e.Message, "status": e.StatusCode, "error": err.Error(),
	})
	fmt.Fprintf(os.Stderr, "ERR %s\n", line)
	os.Exit(1)
}

func out(v interface{}) {
	b, err := json.Marshal(v)
	if err != nil {
		fail(err)
	}
	os.Stdout.Write(append(b, '\n'))
}

// kv collects repeated -flag name=value options.
type kv map[string]string

func (m kv) String() string { return fmt.Sprint(map[string]string(m)) }
func (m kv) Set(s string) error {
	i := strings.IndexByte(s, '=')
	if i < 0 {
		return fmt.Errorf("want name=value, got %q", s)
	}
	m[s[:i]] = s[i+1:]
	return nil
}

// onlyReader hides ReadAt/Seek so that minio-go takes its plain-stream paths.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

func objInfo(o minio.ObjectInfo) map[string]interface{} {
	return map[string]interface{}{
		"key": o.Key, "size": o.Size, "etag": o.ETag, "content_type": o.ContentType,
		"user_metadata": o.UserMetadata, "last_modified": o.LastModified.UTC().Format(time.RFC3339),
		"metadata": o.Metadata,
	}
}

func main() {
	if len(os.Args) < 6 {
		fmt.Fprintln(os.Stderr, "usage: s3_runner_flow ENDPOINT AK SK BUCKET COMMAND [flags] [args]")
		os.Exit(2)
	}
	endpoint, ak, sk, bucket, cmd := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	meta := kv{}
	hdr := kv{}
	params := kv{}
	fs.Var(meta, "meta", "user metadata name=value (repeatable)")
	fs.Var(hdr, "header", "extra signed header name=value for presign (repeatable)")
	fs.Var(params, "param", "extra signed query parameter name=value for presign (repeatable)")
	contentType := fs.String("content-type", "", "Content-Type of PutObject")
	partSize := fs.Uint64("part-size", 0, "PutObject PartSize (0 = minio-go's default)")
	threads := fs.Uint("threads", 0, "PutObject NumThreads")
	plain := fs.Bool("plain-reader", false, "hide ReadAt from minio-go (stream paths)")
	trailing := fs.Bool("trailing-headers", false, "Options.TrailingHeaders (CRC32C trailers)")
	sendMD5 := fs.Bool("md5", false, "PutObject SendContentMd5")
	prefix := fs.String("prefix", "", "ListObjects prefix")
	recursive := fs.Bool("recursive", false, "ListObjects recursive")
	maxKeys := fs.Int("max-keys", 0, "ListObjects page size")
	v1 := fs.Bool("v1", false, "ListObjects with the v1 API")
	replace := fs.Bool("replace", false, "CopyObject: replace the metadata")
	region := fs.String("region", "", "client region (empty = ask GetBucketLocation)")
	fs.Parse(os.Args[6:])
	args := fs.Args()

	client, err := minio.New(endpoint, &minio.Options{
		Creds:           credentials.NewStaticV4(ak, sk, ""),
		Secure:          false,
		Region:          *region,
		Transport:       logTransport{http.DefaultTransport},
		TrailingHeaders: *trailing,
	})
	if err != nil {
		fail(err)
	}
	ctx := context.Background()
	core := minio.Core{Client: client}

	switch cmd {
	case "mb":
		if err := client.MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
			fail(err)
		}
		out(map[string]bool{"ok": true})

	case "location":
		loc, err := client.GetBucketLocation(ctx, bucket)
		if err != nil {
			fail(err)
		}
		out(map[string]string{"location": loc})

	case "presign": // METHOD KEY SECONDS
		secs, _ := strconv.Atoi(args[2])
		exp := time.Duration(secs) * time.Second
		q := url.Values{}
		for k, v := range params {
			q.Set(k, v)
		}
		var u *url.URL
		switch {
		case args[0] == "GET" && len(hdr) == 0:
			u, err = client.PresignedGetObject(ctx, bucket, args[1], exp, q)
		case args[0] == "HEAD" && len(hdr) == 0:
			u, err = client.PresignedHeadObject(ctx, bucket, args[1], exp, q)
		case args[0] == "PUT" && len(hdr) == 0 && len(q) == 0:
			u, err = client.PresignedPutObject(ctx, bucket, args[1], exp)
		default:
			h := http.Header{}
			for k, v := range hdr {
				h.Set(k, v)
			}
			u, err = client.PresignHeader(ctx, args[0], bucket, args[1], exp, q, h)
		}
		if err != nil {
			fail(err)
		}
		out(map[string]string{"url": u.String()})

	case "put": // KEY FILE
		data, err := os.ReadFile(args[1])
		if err != nil {
			fail(err)
		}
		var r io.Reader = bytes.NewReader(data)
		if *plain {
			r = onlyReader{r}
		}
		info, err := client.PutObject(ctx, bucket, args[0], r, int64(len(data)), minio.PutObjectOptions{
			UserMetadata: meta, ContentType: *contentType, PartSize: *partSize,
			NumThreads: *threads, SendContentMd5: *sendMD5,
		})
		if err != nil {
			fail(err)
		}
		sum := md5.Sum(data)
		out(map[string]interface{}{"etag": info.ETag, "size": info.Size, "md5": hex.EncodeToString(sum[:])})

	case "get": // KEY -> sha256 and size of what GetObject read
		obj, err := client.GetObject(ctx, bucket, args[0], minio.GetObjectOptions{})
		if err != nil {
			fail(err)
		}
		h := sha256.New()
		n, err := io.Copy(h, obj)
		if err != nil {
			fail(err)
		}
		st, err := obj.Stat()
		if err != nil {
			fail(err)
		}
		// a ranged read through the same object handle (ReadAt)
		var tail []byte
		if n > 10 {
			tail = make([]byte, 10)
			if _, err := obj.ReadAt(tail, n-10); err != nil && err != io.EOF {
				fail(err)
			}
		}
		obj.Close()
		out(map[string]interface{}{"sha256": hex.EncodeToString(h.Sum(nil)), "size": n,
			"info": objInfo(st), "tail": base64.StdEncoding.EncodeToString(tail)})

	case "stat": // KEY
		st, err := client.StatObject(ctx, bucket, args[0], minio.StatObjectOptions{})
		if err != nil {
			fail(err)
		}
		out(objInfo(st))

	case "list":
		var keys, prefixes []string
		for o := range client.ListObjects(ctx, bucket, minio.ListObjectsOptions{
			Prefix: *prefix, Recursive: *recursive, MaxKeys: *maxKeys, UseV1: *v1,
		}) {
			if o.Err != nil {
				fail(o.Err)
			}
			if strings.HasSuffix(o.Key, "/") && o.Size == 0 && o.ETag == "" {
				prefixes = append(prefixes, o.Key)
			} else {
				keys = append(keys, o.Key)
			}
			if len(keys)+len(prefixes) > 100 { // a server that repeats itself (tests list a few keys)
				fail(fmt.Errorf("listing does not end: %d keys, %d prefixes, last %q",
					len(keys), len(prefixes), o.Key))
			}
		}
		out(map[string][]string{"keys": keys, "prefixes": prefixes})

	case "rm": // KEY
		if err := client.RemoveObject(ctx, bucket, args[0], minio.RemoveObjectOptions{}); err != nil {
			fail(err)
		}
		out(map[string]bool{"ok": true})

	case "rms": // KEY... (DeleteObjects)
		ch := make(chan minio.ObjectInfo, len(args))
		for _, k := range args {
			ch <- minio.ObjectInfo{Key: k}
		}
		close(ch)
		var errs []string
		for e := range client.RemoveObjects(ctx, bucket, ch, minio.RemoveObjectsOptions{}) {
			errs = append(errs, e.ObjectName+": "+e.Err.Error())
		}
		out(map[string]interface{}{"errors": errs})

	case "cp": // SRC DST
		info, err := client.CopyObject(ctx,
			minio.CopyDestOptions{Bucket: bucket, Object: args[1], UserMetadata: meta, ReplaceMetadata: *replace},
			minio.CopySrcOptions{Bucket: bucket, Object: args[0]})
		if err != nil {
			fail(err)
		}
		out(map[string]interface{}{"etag": info.ETag})

	case "compose": // DST SRC... (ComposeObject: a part copied from each source)
		var srcs []minio.CopySrcOptions
		for _, k := range args[1:] {
			srcs = append(srcs, minio.CopySrcOptions{Bucket: bucket, Object: k})
		}
		info, err := client.ComposeObject(ctx, minio.CopyDestOptions{Bucket: bucket, Object: args[0]}, srcs...)
		if err != nil {
			fail(err)
		}
		out(map[string]interface{}{"etag": info.ETag, "size": info.Size})

	case "mpu": // KEY FILE PARTSIZE: the core multipart API, step by step
		data, err := os.ReadFile(args[1])
		if err != nil {
			fail(err)
		}
		ps, _ := strconv.Atoi(args[2])
		id, err := core.NewMultipartUpload(ctx, bucket, args[0], minio.PutObjectOptions{
			UserMetadata: meta, ContentType: *contentType})
		if err != nil {
			fail(err)
		}
		ups, err := core.ListMultipartUploads(ctx, bucket, args[0], "", "", "", 100)
		if err != nil {
			fail(err)
		}
		listed := false
		for _, u := range ups.Uploads {
			listed = listed || u.UploadID == id
		}
		var parts []minio.CompletePart
		var partMD5 []byte
		for i, n := 0, 1; i < len(data); i, n = i+ps, n+1 {
			end := i + ps
			if end > len(data) {
				end = len(data)
			}
			chunk := data[i:end]
			sum := md5.Sum(chunk)
			partMD5 = append(partMD5, sum[:]...)
			p, err := core.PutObjectPart(ctx, bucket, args[0], id, n, bytes.NewReader(chunk),
				int64(len(chunk)), base64.StdEncoding.EncodeToString(sum[:]), "", nil)
			if err != nil {
				fail(err)
			}
			if p.ETag != hex.EncodeToString(sum[:]) {
				fail(fmt.Errorf("part %d: ETag %q, want %q", n, p.ETag, hex.EncodeToString(sum[:])))
			}
			parts = append(parts, minio.CompletePart{PartNumber: n, ETag: p.ETag})
		}
		lp, err := core.ListObjectParts(ctx, bucket, args[0], id, 0, 1000)
		if err != nil {
			fail(err)
		}
		var lparts []int64
		for _, p := range lp.ObjectParts {
			lparts = append(lparts, p.Size)
		}
		etag, err := core.CompleteMultipartUpload(ctx, bucket, args[0], id, parts, minio.PutObjectOptions{})
		if err != nil {
			fail(err)
		}
		all := md5.Sum(partMD5)
		want := fmt.Sprintf("%s-%d", hex.EncodeToString(all[:]), len(parts))
		// an aborted upload of another key leaves nothing behind
		id2, err := core.NewMultipartUpload(ctx, bucket, args[0]+".aborted", minio.PutObjectOptions{})
		if err != nil {
			fail(err)
		}
		if _, err := core.PutObjectPart(ctx, bucket, args[0]+".aborted", id2, 1,
			bytes.NewReader(data[:1024]), 1024, "", "", nil); err != nil {
			fail(err)
		}
		if err := core.AbortMultipartUpload(ctx, bucket, args[0]+".aborted", id2); err != nil {
			fail(err)
		}
		ups2, err := core.ListMultipartUploads(ctx, bucket, "", "", "", "", 100)
		if err != nil {
			fail(err)
		}
		var left []string
		for _, u := range ups2.Uploads {
			left = append(left, u.Key)
		}
		sort.Strings(left)
		out(map[string]interface{}{"etag": etag, "want_etag": want, "listed_upload": listed,
			"listed_part_sizes": lparts, "uploads_left": left})

	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n", cmd)
		os.Exit(2)
	}
}
