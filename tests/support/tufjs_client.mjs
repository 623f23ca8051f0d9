// A device with tuf-js: refresh, find a target, download and verify it.
// usage: node tufjs_client.mjs ROOT_JSON METADATA_DIR BASE_URL TARGET_PATH OUT_DIR
import fs from 'node:fs';
import path from 'node:path';
import { Updater } from 'tuf-js';

const [rootFile, metadataDir, baseUrl, targetPath, outDir] = process.argv.slice(2);
fs.mkdirSync(metadataDir, { recursive: true });
fs.mkdirSync(outDir, { recursive: true });
if (!fs.existsSync(path.join(metadataDir, 'root.json'))) {
  fs.copyFileSync(rootFile, path.join(metadataDir, 'root.json'));
}
const updater = new Updater({
  metadataDir,
  metadataBaseUrl: `${baseUrl}/metadata`,
  targetDir: outDir,
  targetBaseUrl: `${baseUrl}/targets`,
  config: { fetchTimeout: 60000 },
});
try {
  await updater.refresh();
  const info = await updater.getTargetInfo(targetPath);
  if (!info) {
    console.log(JSON.stringify({ ok: false, error: `no target ${targetPath}` }));
    process.exit(3);
  }
  const file = await updater.downloadTarget(info, path.join(outDir, path.basename(targetPath)));
  console.log(JSON.stringify({ ok: true, file, length: info.length, custom: info.custom }));
} catch (err) {
  console.log(JSON.stringify({ ok: false, error: `${err.name}: ${err.message}` }));
  process.exit(2);
}
