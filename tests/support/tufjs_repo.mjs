// A vendor repository made by another TUF implementation: tuf-js's own
// models (@tufjs/models), keys and signatures from Node's crypto, files
// serialized by JSON.stringify (indented: valid, not canonical).  Nothing
// here shares code with Airlock or python-tuf.
//
// usage: node tufjs_repo.mjs OUT_DIR REPO_NAME
// Writes OUT_DIR/bundle1/airlock/REPO (root v1 and v2 (rotated root key),
// targets with a delegation of plc-x/* to role plc-x, a target in each;
// Ed25519, ECDSA P-256 and RSA-PSS keys) and
// OUT_DIR/bundle2/airlock/REPO (incremental: plc-x v2 adds a target; only the
// new target file is in it).  Prints JSON naming the files.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import models from '@tufjs/models';
import delegationsModule from '@tufjs/models/dist/delegations.js';  // not re-exported by the index
import roleModule from '@tufjs/models/dist/role.js';
import canonicalJson from '@tufjs/canonical-json';

const { Key, Metadata, MetaFile, Root, Signature, Snapshot, TargetFile, Targets, Timestamp } = models;
const { Delegations } = delegationsModule;
const { DelegatedRole, Role } = roleModule;
const { canonicalize } = canonicalJson;

const [outDir, repo] = process.argv.slice(2);
const SPEC = '1.0.31';
const expires = new Date(Date.now() + 30 * 86400 * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');

// Ed25519 by default; the snapshot key is ECDSA P-256 and the timestamp key
// RSA-PSS, as other vendors' tools make them (PEM public keys, DER ECDSA
// signatures, PSS with a 32-byte salt).
function newKey(kind = 'ed25519') {
  let keyType, scheme, pub, privateKey, sign;
  if (kind === 'ed25519') {
    const pair = crypto.generateKeyPairSync('ed25519');
    privateKey = pair.privateKey;
    [keyType, scheme] = ['ed25519', 'ed25519'];
    pub = pair.publicKey.export({ format: 'der', type: 'spki' }).subarray(-32).toString('hex');
    sign = (bytes) => crypto.sign(null, bytes, privateKey);
  } else if (kind === 'ecdsa') {
    const pair = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    privateKey = pair.privateKey;
    [keyType, scheme] = ['ecdsa', 'ecdsa-sha2-nistp256'];
    pub = pair.publicKey.export({ format: 'pem', type: 'spki' });
    sign = (bytes) => crypto.sign('sha256', bytes, { key: privateKey, dsaEncoding: 'der' });
  } else {
    const pair = crypto.generateKeyPairSync('rsa', { modulusLength: 3072 });
    privateKey = pair.privateKey;
    [keyType, scheme] = ['rsa', 'rsassa-pss-sha256'];
    pub = pair.publicKey.export({ format: 'pem', type: 'spki' });
    sign = (bytes) => crypto.sign('sha256', bytes, { key: privateKey, padding: crypto.constants.RSA_PKCS1_PSS_PADDING,
      saltLength: 32 });
  }
  const keyJson = { keytype: keyType, keyval: { public: pub }, scheme };
  const keyID = crypto.createHash('sha256').update(canonicalize(keyJson)).digest('hex');
  return { key: new Key({ keyID, keyType, scheme, keyVal: { public: pub } }), sign };
}

function signer(k) {
  return (bytes) => new Signature({ keyID: k.key.keyID, sig: k.sign(bytes).toString('hex') });
}

function serialize(md) {
  return Buffer.from(JSON.stringify(md.toJSON(), null, 2) + '\n');
}

function sha256(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

function target(p, data, custom) {
  return new TargetFile({ path: p, length: data.length, hashes: { sha256: sha256(data) },
    unrecognizedFields: custom ? { custom } : {} });
}

function writeBundle(name, files, targetFiles) {
  const base = path.join(outDir, name, 'airlock', repo);
  fs.mkdirSync(path.join(base, 'metadata'), { recursive: true });
  for (const [file, bytes] of Object.entries(files)) fs.writeFileSync(path.join(base, 'metadata', file), bytes);
  for (const [p, data] of Object.entries(targetFiles)) {
    const dir = path.join(base, 'targets', path.dirname(p));
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, `${sha256(data)}.${path.basename(p)}`), data);
  }
  return path.join(outDir, name);
}

const keys = { root1: newKey(), root2: newKey(), targets: newKey(), snapshot: newKey('ecdsa'), timestamp: newKey('rsa'),
  plcx: newKey() };
const role = (k) => new Role({ keyIDs: [k.key.keyID], threshold: 1 });
const rootFor = (version, rootKey) => new Root({
  version, specVersion: SPEC, expires, consistentSnapshot: true,
  keys: Object.fromEntries([rootKey, keys.targets, keys.snapshot, keys.timestamp].map((k) => [k.key.keyID, k.key])),
  roles: { root: role(rootKey), targets: role(keys.targets), snapshot: role(keys.snapshot),
    timestamp: role(keys.timestamp) },
});

const root1 = new Metadata(rootFor(1, keys.root1));
root1.sign(signer(keys.root1));
const root2 = new Metadata(rootFor(2, keys.root2));  // the root key rotated: signed by the old and the new
root2.sign(signer(keys.root1));
root2.sign(signer(keys.root2));

const readme = Buffer.from('Firmware notes from a vendor whose tools are not ours.\n');
const fw100 = Buffer.alloc(300 * 1024, 'plc-x firmware 1.0.0 ');
const fw110 = Buffer.alloc(310 * 1024, 'plc-x firmware 1.1.0 ');
const delegations = new Delegations({
  keys: { [keys.plcx.key.keyID]: keys.plcx.key },
  roles: { 'plc-x': new DelegatedRole({ name: 'plc-x', keyIDs: [keys.plcx.key.keyID], threshold: 1,
    terminating: true, paths: ['plc-x/*'] }) },
});
const targets = new Metadata(new Targets({ version: 1, specVersion: SPEC, expires, delegations,
  targets: { 'docs/readme.txt': target('docs/readme.txt', readme) } }));
targets.sign(signer(keys.targets));

function plcx(version, files) {
  const md = new Metadata(new Targets({ version, specVersion: SPEC, expires, targets: Object.fromEntries(
    Object.entries(files).map(([p, [data, v]]) => [p, target(p, data, { hardware: ['plc-x'], version: v })])) }));
  md.sign(signer(keys.plcx));
  return serialize(md);
}

function topFiles(version, targetsBytes, plcxVersion, plcxBytes) {
  const snapshot = new Metadata(new Snapshot({ version, specVersion: SPEC, expires, meta: {
    'targets.json': new MetaFile({ version: 1, length: targetsBytes.length, hashes: { sha256: sha256(targetsBytes) } }),
    'plc-x.json': new MetaFile({ version: plcxVersion }),
  } }));
  snapshot.sign(signer(keys.snapshot));
  const snapshotBytes = serialize(snapshot);
  const timestamp = new Metadata(new Timestamp({ version, specVersion: SPEC, expires, snapshotMeta: new MetaFile({
    version, length: snapshotBytes.length, hashes: { sha256: sha256(snapshotBytes) } }) }));
  timestamp.sign(signer(keys.timestamp));
  return { 'timestamp.json': serialize(timestamp), [`${version}.snapshot.json`]: snapshotBytes,
    '1.targets.json': targetsBytes, [`${plcxVersion}.plc-x.json`]: plcxBytes };
}

const roots = { '1.root.json': serialize(root1), '2.root.json': serialize(root2) };
const targetsBytes = serialize(targets);
const bundle1 = writeBundle('bundle1', { ...roots, ...topFiles(1, targetsBytes, 1,
  plcx(1, { 'plc-x/fw-1.0.0.bin': [fw100, '1.0.0'] })) }, { 'docs/readme.txt': readme, 'plc-x/fw-1.0.0.bin': fw100 });
const bundle2 = writeBundle('bundle2', { ...roots, ...topFiles(2, targetsBytes, 2,
  plcx(2, { 'plc-x/fw-1.0.0.bin': [fw100, '1.0.0'], 'plc-x/fw-1.1.0.bin': [fw110, '1.1.0'] })) },
{ 'plc-x/fw-1.1.0.bin': fw110 });
fs.writeFileSync(path.join(outDir, 'fw-1.0.0.bin'), fw100);
fs.writeFileSync(path.join(outDir, 'fw-1.1.0.bin'), fw110);
console.log(JSON.stringify({ bundle1, bundle2, root1: path.join(bundle1, 'airlock', repo, 'metadata', '1.root.json'),
  fw100: path.join(outDir, 'fw-1.0.0.bin'), fw110: path.join(outDir, 'fw-1.1.0.bin'),
  keyids: Object.fromEntries(Object.entries(keys).map(([n, k]) => [n, k.key.keyID])) }));
