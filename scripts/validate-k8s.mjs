/* global process, console */
// Validates rendered Kubernetes manifests offline (no cluster): every object against the schema of
// its apiVersion/kind from the npm `kubernetes-models` package, then the references between objects
// that no schema sees (selectors that match no pod, a ConfigMap nobody renders, a probe on a port
// the container does not name).
//
//   kubectl kustomize k8s/overlays/prod | node scripts/validate-k8s.mjs - --external Secret/shop-secrets
//
// --external Kind/name   an object created outside these manifests (referencing it is fine)
// --allow-kind apiVersion/Kind   a kind kubernetes-models does not know, accepted unvalidated
import fs from "node:fs";
import { parseAllDocuments } from "yaml";

const args = process.argv.slice(2);
const files = [];
const external = new Set();
const allowedKinds = new Set();
for (let i = 0; i < args.length; i++) {
	if (args[i] === "--external") external.add(args[++i]);
	else if (args[i] === "--allow-kind") allowedKinds.add(args[++i]);
	else files.push(args[i]);
}
if (files.length === 0) {
	console.error("usage: validate-k8s.mjs <file.yaml|-> ... [--external Kind/name] [--allow-kind apiVersion/Kind]");
	process.exit(2);
}

const problems = [];
const objects = [];
for (const file of files) {
	const text = fs.readFileSync(file === "-" ? 0 : file, "utf8");
	for (const doc of parseAllDocuments(text)) {
		if (doc.errors.length) problems.push(`${file}: ${doc.errors.map((e) => e.message).join("; ")}`);
		const obj = doc.toJS();
		if (obj != null) objects.push(obj);
	}
}

const idOf = (o) => `${o.kind}/${o.metadata?.name ?? "?"}`;

/** The model class of kubernetes-models for an apiVersion/kind, or undefined when it has none. */
async function modelFor(apiVersion, kind) {
	if (!/^([a-z0-9.-]+\/)?v\d+((alpha|beta)\d+)?$/.test(apiVersion ?? "")) return undefined;
	try {
		const mod = await import(`kubernetes-models/${apiVersion}`);
		return mod[kind];
	} catch {
		return undefined;
	}
}

for (const obj of objects) {
	const id = idOf(obj);
	if (!obj.apiVersion || !obj.kind || !obj.metadata?.name) {
		problems.push(`${id}: apiVersion, kind and metadata.name are required`);
		continue;
	}
	const Model = await modelFor(obj.apiVersion, obj.kind);
	if (!Model) {
		if (!allowedKinds.has(`${obj.apiVersion}/${obj.kind}`)) problems.push(`${id}: unknown kind ${obj.apiVersion}/${obj.kind}`);
		continue;
	}
	try {
		new Model(obj).validate();
	} catch (err) {
		problems.push(`${id}: ${err.message}`);
	}
}

// --- references between objects ---
const byKind = (kind) => objects.filter((o) => o.kind === kind);
const exists = (kind, name) => external.has(`${kind}/${name}`) || objects.some((o) => o.kind === kind && o.metadata?.name === name);
const matches = (selector, labels) => Object.entries(selector ?? {}).every(([k, v]) => labels?.[k] === v);
const workloads = objects.filter((o) => ["Deployment", "StatefulSet", "DaemonSet"].includes(o.kind));
const podLabels = workloads.map((w) => w.spec?.template?.metadata?.labels ?? {});

for (const w of workloads) {
	const id = idOf(w);
	const selector = w.spec?.selector?.matchLabels;
	if (!selector || !matches(selector, w.spec?.template?.metadata?.labels)) problems.push(`${id}: selector does not match the pod template's labels`);
	if (w.kind === "StatefulSet" && !exists("Service", w.spec.serviceName)) problems.push(`${id}: serviceName ${w.spec.serviceName} is no Service`);
	const pod = w.spec?.template?.spec ?? {};
	for (const v of pod.volumes ?? []) {
		if (v.configMap && !exists("ConfigMap", v.configMap.name)) problems.push(`${id}: volume ${v.name} needs ConfigMap ${v.configMap.name}`);
		if (v.secret && !exists("Secret", v.secret.secretName)) problems.push(`${id}: volume ${v.name} needs Secret ${v.secret.secretName}`);
	}
	const claims = new Set((w.spec?.volumeClaimTemplates ?? []).map((c) => c.metadata?.name));
	const volumes = new Set([...(pod.volumes ?? []).map((v) => v.name), ...claims]);
	for (const c of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
		const where = `${id} container ${c.name}`;
		for (const ref of c.envFrom ?? []) {
			if (ref.configMapRef && !ref.configMapRef.optional && !exists("ConfigMap", ref.configMapRef.name)) problems.push(`${where}: envFrom needs ConfigMap ${ref.configMapRef.name}`);
			if (ref.secretRef && !ref.secretRef.optional && !exists("Secret", ref.secretRef.name)) problems.push(`${where}: envFrom needs Secret ${ref.secretRef.name}`);
		}
		for (const e of c.env ?? []) {
			const cm = e.valueFrom?.configMapKeyRef;
			const sec = e.valueFrom?.secretKeyRef;
			if (cm && !cm.optional && !exists("ConfigMap", cm.name)) problems.push(`${where}: env ${e.name} needs ConfigMap ${cm.name}`);
			if (sec && !sec.optional && !exists("Secret", sec.name)) problems.push(`${where}: env ${e.name} needs Secret ${sec.name}`);
		}
		for (const m of c.volumeMounts ?? []) if (!volumes.has(m.name)) problems.push(`${where}: mounts unknown volume ${m.name}`);
		const ports = new Set((c.ports ?? []).map((p) => p.name).filter(Boolean));
		for (const probe of ["startupProbe", "readinessProbe", "livenessProbe"]) {
			const port = c[probe]?.httpGet?.port ?? c[probe]?.tcpSocket?.port;
			if (typeof port === "string" && !ports.has(port)) problems.push(`${where}: ${probe} uses port ${port}, which the container does not name`);
		}
	}
}

for (const svc of byKind("Service")) {
	const selector = svc.spec?.selector;
	if (selector && !podLabels.some((l) => matches(selector, l))) problems.push(`${idOf(svc)}: selector matches no pod template`);
}
for (const pdb of byKind("PodDisruptionBudget")) {
	if (!podLabels.some((l) => matches(pdb.spec?.selector?.matchLabels, l))) problems.push(`${idOf(pdb)}: selector matches no pod template`);
}
for (const hpa of byKind("HorizontalPodAutoscaler")) {
	const ref = hpa.spec?.scaleTargetRef ?? {};
	if (!exists(ref.kind, ref.name)) problems.push(`${idOf(hpa)}: scales ${ref.kind}/${ref.name}, which does not exist`);
}
for (const ing of byKind("Ingress")) {
	for (const rule of ing.spec?.rules ?? []) {
		for (const p of rule.http?.paths ?? []) {
			const { name, port } = p.backend?.service ?? {};
			const svc = objects.find((o) => o.kind === "Service" && o.metadata?.name === name);
			if (!svc) problems.push(`${idOf(ing)}: backend Service ${name} does not exist`);
			else if (!(svc.spec?.ports ?? []).some((sp) => (port?.name ? sp.name === port.name : sp.port === port?.number))) {
				problems.push(`${idOf(ing)}: Service ${name} has no port ${port?.name ?? port?.number}`);
			}
		}
	}
}

if (problems.length) {
	for (const p of problems) console.error(`✗ ${p}`);
	console.error(`${problems.length} problem(s) in ${objects.length} objects`);
	process.exit(1);
}
console.log(`✓ ${objects.length} objects valid (${[...new Set(objects.map((o) => o.kind))].sort().join(", ")})`);
