// Validates the ServiceMonitor documents of rendered Kubernetes YAML against the Prometheus
// Operator's schema (npm @kubernetes-models/prometheus-operator; kubernetes-validate only
// knows the core kinds). Used by scripts/check-deploy.sh:
//   NPM_DIR=<folder with node_modules> node scripts/validate-servicemonitor.mjs FILE...
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const dir = process.env.NPM_DIR;
if (!dir) {
  console.error("NPM_DIR is not set");
  process.exit(2);
}
const require = createRequire(`${dir}/package.json`);
const yaml = require("js-yaml");
// An ES module only: import it by path (require.resolve does not see "import"-only exports).
const url = pathToFileURL(
  `${dir}/node_modules/@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor.js`,
);
const { ServiceMonitor } = await import(url.href);

let seen = 0;
let bad = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(readFileSync(file, "utf8"))) {
    if (!doc || doc.kind !== "ServiceMonitor") continue;
    seen++;
    const name = `${file}: ServiceMonitor/${doc.metadata?.name}`;
    try {
      new ServiceMonitor(doc).validate();
      console.log(`INFO ${name} passed`);
    } catch (e) {
      bad++;
      console.error(`ERROR ${name}: ${e.message}`);
    }
  }
}
if (seen === 0) console.log("INFO no ServiceMonitor documents");
process.exit(bad ? 1 : 0);
