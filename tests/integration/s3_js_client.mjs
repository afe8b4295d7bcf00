// The AWS SDK for JavaScript v3 (@aws-sdk/client-s3) against cairnd, driven by
// test_s3_js.py.  Usage: node s3_js_client.mjs <endpoint> <access key> <secret> <bucket>
// Prints one JSON document: what each step saw.  The SDK is loaded from
// $CAIRN_JS_DEPS (default: js-deps/ beside this file, where
// `npm install --prefix tests/integration/js-deps @aws-sdk/client-s3` puts it).
import { createHash } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";
import { Readable } from "node:stream";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const deps = process.env.CAIRN_JS_DEPS || path.join(here, "js-deps");
const require = createRequire(path.join(deps, "package.json"));
const {
  S3Client, CreateBucketCommand, PutObjectCommand, GetObjectCommand, HeadObjectCommand,
  ListObjectsV2Command, DeleteObjectCommand,
} = require("@aws-sdk/client-s3");

const [endpoint, accessKeyId, secretAccessKey, bucket] = process.argv.slice(2);
const client = new S3Client({
  endpoint,
  region: "us-east-1",
  forcePathStyle: true,
  credentials: { accessKeyId, secretAccessKey },
  maxAttempts: 1,
});

// the headers of each request as sent (after signing)
const sent = [];
client.middlewareStack.add(
  (next) => async (args) => {
    const h = {};
    for (const [k, v] of Object.entries(args.request.headers || {})) h[k.toLowerCase()] = v;
    sent.push({ method: args.request.method, path: args.request.path, headers: h });
    return next(args);
  },
  { step: "deserialize", name: "cairnRecordHeaders" },
);

// deterministic pseudo-random bytes: block i of a stream named `seed`
function block(seed, i, size) {
  const out = Buffer.alloc(size);
  let off = 0, n = 0;
  while (off < size) {
    const d = createHash("sha256").update(`${seed}/${i}/${n++}`).digest();
    off += d.copy(out, off);
  }
  return out;
}

const sha256 = (b) => createHash("sha256").update(b).digest("hex");
const md5 = (b) => createHash("md5").update(b).digest("hex");

async function bodyBytes(body) {
  const chunks = [];
  for await (const c of body) chunks.push(c);
  return Buffer.concat(chunks);
}

const result = { steps: {} };
const step = async (name, fn) => {
  try {
    result.steps[name] = { ok: true, ...(await fn()) };
  } catch (e) {
    result.steps[name] = {
      ok: false, error: e.name, message: String(e.message),
      status: e.$metadata && e.$metadata.httpStatusCode,
    };
  }
};

await step("create_bucket", async () => {
  await client.send(new CreateBucketCommand({ Bucket: bucket }));
  return {};
});

// a stream body: the SDK sends it aws-chunked with a CRC32 trailer
const NBLOCKS = 48, BLOCK = 65536 + 17; // odd sizes: chunks do not align with anything
const streamHash = createHash("sha256"), streamMd5 = createHash("md5");
for (let i = 0; i < NBLOCKS; i++) {
  const b = block("stream", i, BLOCK);
  streamHash.update(b);
  streamMd5.update(b);
}
const streamSha = streamHash.digest("hex"), streamEtag = streamMd5.digest("hex");
await step("put_stream", async () => {
  function* gen() {
    for (let i = 0; i < NBLOCKS; i++) yield block("stream", i, BLOCK);
  }
  const before = sent.length;
  const r = await client.send(new PutObjectCommand({
    Bucket: bucket, Key: "stream/obj one+two:3", Body: Readable.from(gen()),
    ContentLength: NBLOCKS * BLOCK, ContentType: "application/x-test",
    Metadata: { origin: "js-stream" },
  }));
  const req = sent[before];
  return {
    etag: r.ETag, crc32: r.ChecksumCRC32, expect_etag: `"${streamEtag}"`, size: NBLOCKS * BLOCK,
    sha256: streamSha, request_headers: req ? req.headers : null,
  };
});

const buf = Buffer.concat([block("buffer", 0, 100000), Buffer.from("tail")]);
await step("put_buffer", async () => {
  const before = sent.length;
  const r = await client.send(new PutObjectCommand({
    Bucket: bucket, Key: "buf/obj", Body: buf, Metadata: { origin: "js-buffer" },
  }));
  return {
    etag: r.ETag, crc32: r.ChecksumCRC32, expect_etag: `"${md5(buf)}"`, size: buf.length,
    sha256: sha256(buf), request_headers: sent[before] ? sent[before].headers : null,
  };
});

await step("get_stream", async () => {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: "stream/obj one+two:3" }));
  const b = await bodyBytes(r.Body);
  return {
    sha256: sha256(b), size: b.length, etag: r.ETag, content_type: r.ContentType,
    content_encoding: r.ContentEncoding || null, metadata: r.Metadata,
  };
});

await step("get_buffer", async () => {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: "buf/obj" }));
  const b = await bodyBytes(r.Body);
  return { equal: Buffer.compare(b, buf) === 0, size: b.length, etag: r.ETag, metadata: r.Metadata };
});

await step("get_range", async () => {
  const r = await client.send(new GetObjectCommand({ Bucket: bucket, Key: "buf/obj", Range: "bytes=99990-" }));
  const b = await bodyBytes(r.Body);
  return { equal: Buffer.compare(b, buf.subarray(99990)) === 0, content_range: r.ContentRange };
});

await step("list", async () => {
  const r = await client.send(new ListObjectsV2Command({ Bucket: bucket }));
  return {
    keys: (r.Contents || []).map((c) => c.Key),
    sizes: (r.Contents || []).map((c) => c.Size),
    key_count: r.KeyCount,
  };
});

await step("list_delimiter", async () => {
  const r = await client.send(new ListObjectsV2Command({ Bucket: bucket, Delimiter: "/" }));
  return { prefixes: (r.CommonPrefixes || []).map((c) => c.Prefix), keys: (r.Contents || []).map((c) => c.Key) };
});

await step("head", async () => {
  const r = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: "buf/obj" }));
  return { size: r.ContentLength, etag: r.ETag, metadata: r.Metadata };
});

await step("delete", async () => {
  await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: "buf/obj" }));
  return {};
});

await step("head_after_delete", async () => {
  await client.send(new HeadObjectCommand({ Bucket: bucket, Key: "buf/obj" }));
  return {};
});

await step("get_missing", async () => {
  await client.send(new GetObjectCommand({ Bucket: bucket, Key: "missing" }));
  return {};
});

process.stdout.write(JSON.stringify(result) + "\n");
