/**
 * One document collection, on NeDB (embedded) or MongoDB (mongoose), with one interface.
 * Entities leave with `id`, never `_id`. Conditional updates are single atomic operations on both
 * backends (NeDB serialises operations per datastore; MongoDB's findOneAndUpdate is atomic).
 */
import crypto from "node:crypto";
import path from "node:path";
import fs from "node:fs";
import Datastore from "@seald-io/nedb";
import type { Model, Schema, SchemaDefinition } from "mongoose";
import { ConflictError } from "../lib/errors";
import { watchMongoConnection } from "./store-outages";
import { checkDatafile, loadDatafile, lockDataDir, namingFile, openDatafile, StoreUnavailableError, type NedbFile } from "./nedb-datafile";
import { installKeptKeyIndexUpdates, installPlainFieldKeys, installSparseDateKeys } from "./nedb-index-update";
import { installFastKeyComparison } from "./nedb-index-compare";
import { installKeyTrees } from "./nedb-key-tree";
import { installSelectiveCandidates } from "./nedb-query-plan";
import { installLeanCopies } from "./nedb-copies";
import { opsLog } from "../lib/ops-log";

installKeptKeyIndexUpdates();
installSparseDateKeys();
installPlainFieldKeys();
installFastKeyComparison();
installKeyTrees();
installSelectiveCandidates();
installLeanCopies();

export interface IndexSpec {
	fields: Record<string, 1 | -1>;
	unique?: boolean;
	sparse?: boolean;
	expireAfterSeconds?: number;
}

export interface CollectionSpec {
	/** Mongoose field definitions: the declared shape of a document (without `_id`). */
	fields: SchemaDefinition;
	indexes?: IndexSpec[];
	/**
	 * A history that no start-up work reads (audit trail, event log, outbox): the service starts
	 * while it loads, and operations on it wait for the load. A large embedded file then does not
	 * hold up the shop's start.
	 */
	loadInBackground?: boolean;
}

export interface FindOptions {
	sort?: Record<string, 1 | -1>;
	limit?: number;
	offset?: number;
	fields?: string[];
}

export type Query = Record<string, any>;
export type Entity = { id: string } & Record<string, any>;

/**
 * 96 random bits: unguessable ids. Drawn from a pooled buffer, as one small randomBytes call costs ~5 µs.
 * Never with a leading "-": command lines (the REPL's `stock <variantId>`) take such an id for options.
 */
export function newId(): string {
	if (idPoolOffset + ID_BYTES > idPool.length) {
		crypto.randomFillSync(idPool);
		idPoolOffset = 0;
	}
	idPoolOffset += ID_BYTES;
	const id = idPool.toString("base64url", idPoolOffset - ID_BYTES, idPoolOffset);
	return id[0] === "-" ? `A${id.slice(1)}` : id;
}
const ID_BYTES = 12;
/** The first expiry sweep after a collection opens: after the start's own work. */
const FIRST_SWEEP_MS = 15_000;
const idPool = Buffer.alloc(ID_BYTES * 512);
let idPoolOffset = idPool.length;

/**
 * Mongoose itself, loaded on first use: only a MONGO_URI deployment needs it, and requiring it
 * costs the embedded default ~0.4 s of start-up and ~25 MB (its BSON layer reserves a 17 MB buffer).
 */
function loadMongoose(): typeof import("mongoose") {
	return require("mongoose");
}

/** Mongoose schema of a collection: used by the adapter and by model tests. */
export function buildMongooseSchema(spec: CollectionSpec): Schema {
	const mongoose = loadMongoose();
	// strict: false keeps fields a service adds later; declared fields are still cast and validated.
	// strictQuery: false keeps every filter condition. moleculer-db-adapter-mongoose sets strictQuery
	// globally, which drops conditions on undeclared fields: the orders' compare-and-set guards
	// ("saga.state", followUpLease, "refunds.<id>" $exists) went, and each refund was counted twice.
	const schema = new mongoose.Schema({ _id: { type: String, default: newId }, ...spec.fields }, { versionKey: false, strict: false, strictQuery: false });
	for (const idx of spec.indexes ?? []) {
		// Only the options set: the driver sends an undefined one as null, which MongoDB 6+ refuses
		// ("sparse: null is not convertible to bool"), and createIndexes failed every start.
		const options = Object.fromEntries(Object.entries({ unique: idx.unique, sparse: idx.sparse, expireAfterSeconds: idx.expireAfterSeconds }).filter(([, v]) => v !== undefined));
		schema.index(idx.fields, options);
	}
	return schema;
}

/**
 * The one MongoDB connection of the process (the adapter uses mongoose's default connection for
 * every collection), closed when the last collection using it lets go: each collection closing it
 * at its service's stop cut off the others' last writes (analytics flushing, a message being sent).
 */
export const sharedMongoConnection = {
	users: 0,
	acquire(): void {
		this.users++;
	},
	/** Runs `close` when this was the last user. */
	async release(close: () => Promise<unknown>): Promise<void> {
		if (this.users > 0 && --this.users > 0) return;
		await close();
	},
};

/** Translates our `id` to the stored `_id` in queries and documents. */
function toStored(obj: Query): Query {
	if (!obj || typeof obj !== "object") return obj;
	const out: Query = {};
	for (const [k, v] of Object.entries(obj)) {
		if (k === "id") out._id = v;
		else if (k === "$or" || k === "$and" || k === "$nor") out[k] = (v as Query[]).map(toStored);
		else out[k] = v;
	}
	return out;
}

/** `_id` becomes `id` (first, as clients see it) and mongoose's `__v` is dropped. A loop: rest-spreading cost ~2% of a checkout. */
export function toEntity<T extends Entity = Entity>(doc: any): T | null {
	if (!doc) return null;
	const out: Record<string, unknown> = { id: String(doc._id) };
	for (const k in doc) if (k !== "_id" && k !== "__v" && Object.prototype.hasOwnProperty.call(doc, k)) out[k] = doc[k];
	return out as T;
}

function isDuplicateKey(err: any): boolean {
	return err?.errorType === "uniqueViolated" || err?.code === 11000;
}

function duplicateError(name: string, spec: CollectionSpec, err: any): ConflictError {
	// MongoDB names the fields; NeDB only gives the value, so name the collection's unique index when there is one.
	const unique = (spec.indexes ?? []).filter((i) => i.unique);
	const fields = err?.keyValue ? Object.keys(err.keyValue) : unique.length === 1 ? Object.keys(unique[0].fields) : [];
	return new ConflictError(`Duplicate ${name} entry`, "DUPLICATE", { collection: name, fields });
}

interface Backend {
	/** What must hold before the service starts, even when the load runs in the background: throws to refuse the start. */
	open(): void;
	connect(): Promise<void>;
	disconnect(): Promise<void>;
	insert(docs: Query[]): Promise<any[]>;
	find(query: Query, opts: FindOptions): Promise<any[]>;
	count(query: Query): Promise<number>;
	updateOne(query: Query, update: Query, upsert: boolean): Promise<any | null>;
	updateMany(query: Query, update: Query): Promise<number>;
	remove(query: Query, multi: boolean): Promise<number>;
	/** Rewrites the store's file now (NeDB); nothing to do where documents are overwritten in place. */
	compact(): Promise<void>;
}

/** NeDB's name of an index: its field names, sorted, joined by commas. */
const nedbIndexName = (fields: string[]) => [...fields].sort().join(",");

class NedbBackend implements Backend {
	db!: Datastore;
	private datafile?: NedbFile;
	private upkeepTimer?: NodeJS.Timeout;
	private firstUpkeep?: NodeJS.Timeout;
	private releaseDataDir?: () => void;
	constructor(private name: string, private spec: CollectionSpec, private file?: string) {}

	/** The data directory is this process's and writable, and the file can be appended to. */
	open() {
		if (!this.file || this.releaseDataDir) return;
		const dir = path.dirname(this.file);
		try {
			fs.mkdirSync(dir, { recursive: true });
		} catch (err) {
			throw new Error(`Cannot create the data directory ${dir}: ${(err as Error).message}`, { cause: err });
		}
		const release = lockDataDir(dir);
		try {
			checkDatafile(this.file);
		} catch (err) {
			release();
			throw err;
		}
		this.releaseDataDir = release;
	}

	async connect() {
		this.open();
		this.db = new Datastore(this.file ? { filename: this.file } : { inMemoryOnly: true });
		const loaded = await loadDatafile(this.db);
		this.datafile = openDatafile(this.db, this.name, loaded.lines - loaded.live);
		const { ttlIndexes } = this.db as unknown as { ttlIndexes: Record<string, number> };
		try {
			for (const idx of this.spec.indexes ?? []) {
				const keys = Object.keys(idx.fields);
				const fieldName = keys.length === 1 ? keys[0] : keys;
				await this.db.ensureIndexAsync({ fieldName, unique: idx.unique, sparse: idx.sparse, expireAfterSeconds: idx.expireAfterSeconds });
				// NeDB arms expiry only when it creates the index, not for one it read from the file.
				if (idx.expireAfterSeconds !== undefined) ttlIndexes[nedbIndexName(keys)] = idx.expireAfterSeconds;
			}
			// An index the file names that the spec no longer lists (a compound one replaced by a plain one) goes,
			// or every write would keep it up to date for good.
			const listed = new Set((this.spec.indexes ?? []).map((idx) => nedbIndexName(Object.keys(idx.fields))));
			for (const name of Object.keys((this.db as unknown as { indexes: Record<string, unknown> }).indexes)) {
				if (name !== "_id" && !listed.has(name)) await this.db.removeIndexAsync(name);
			}
		} catch (err) {
			throw namingFile(this.file ?? this.name, err);
		}
		if (loaded.compact) {
			// Crash-safe like every rewrite; if it fails the file stays as it is, still correct.
			await this.db.compactDatafileAsync().catch((err) => opsLog.error(`Compacting ${this.file} after loading it failed:`, err));
		}
		// Each minute: expired documents go (NeDB drops only those a read meets), and the append-only file is
		// rewritten once it has grown past its live size (see nedb-datafile.ts). The first sweep comes soon
		// after the start, for what expired while the shop was stopped.
		if (this.file) {
			const upkeep = async () => {
				await this.datafile?.removeExpired();
				await this.datafile?.compactIfGrown();
			};
			const run = () => void upkeep().catch((err) => opsLog.error(`Upkeep of ${this.name} (expiry, compaction) failed:`, err));
			this.upkeepTimer = setInterval(run, 60_000);
			this.upkeepTimer.unref();
			this.firstUpkeep = setTimeout(run, FIRST_SWEEP_MS);
			this.firstUpkeep.unref();
		}
	}
	async compact() {
		// In memory (tests) there is no file to rewrite.
		if (this.file) await this.db.compactDatafileAsync();
	}

	async disconnect() {
		clearInterval(this.upkeepTimer);
		clearTimeout(this.firstUpkeep);
		try {
			if (this.datafile) {
				await this.datafile.compactIfGrown();
				this.datafile.close();
			}
		} finally {
			this.releaseDataDir?.();
			this.releaseDataDir = undefined;
		}
	}
	insert(docs: Query[]) {
		this.datafile!.checkWritable();
		return this.db.insertAsync(docs) as Promise<any[]>;
	}
	find(query: Query, opts: FindOptions) {
		let cur = this.db.findAsync(query, opts.fields ? Object.fromEntries(opts.fields.map((f) => [f === "id" ? "_id" : f, 1])) : undefined);
		if (opts.sort) cur = cur.sort(toStored(opts.sort));
		if (opts.offset) cur = cur.skip(opts.offset);
		if (opts.limit) cur = cur.limit(opts.limit);
		return cur.execAsync() as Promise<any[]>;
	}
	count(query: Query) {
		return this.db.countAsync(query) as Promise<number>;
	}
	async updateOne(query: Query, update: Query, upsert: boolean) {
		this.datafile!.checkWritable();
		const res = await this.db.updateAsync(query, update, { multi: false, upsert, returnUpdatedDocs: true });
		return res.numAffected ? (res.affectedDocuments as any) : null;
	}
	async updateMany(query: Query, update: Query) {
		this.datafile!.checkWritable();
		const res = await this.db.updateAsync(query, update, { multi: true });
		return res.numAffected;
	}
	async remove(query: Query, multi: boolean) {
		this.datafile!.checkWritable();
		return this.db.removeAsync(query, { multi });
	}
}

/** The hosts of a MongoDB connection string, for messages: never its user or password. */
export function mongoHosts(uri: string): string {
	const afterScheme = uri.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "");
	const hosts = afterScheme.slice(afterScheme.lastIndexOf("@") + 1).split(/[/?#]/)[0];
	return hosts || "(no host)";
}

class MongoBackend implements Backend {
	model!: Model<any>;
	private adapter: any;
	private connected = false;
	constructor(private name: string, private spec: CollectionSpec, private uri: string) {}

	open() {}
	async connect() {
		const MongooseDbAdapter = require("moleculer-db-adapter-mongoose");
		const mongoose = loadMongoose();
		const model = mongoose.models[this.name] ?? mongoose.model(this.name, buildMongooseSchema(this.spec), this.name);
		this.adapter = new MongooseDbAdapter(this.uri);
		this.adapter.init(null, { schema: { model }, settings: {}, logger: { debug: () => undefined, info: opsLog.info, warn: opsLog.warn, error: opsLog.error } });
		// The adapter's own error names neither the variable nor the cause ("MongoDB connection failed . Status is ...").
		let cause: Error | undefined;
		const noteCause = (err: Error) => (cause = err);
		mongoose.connection.once("error", noteCause);
		try {
			await this.adapter.connect();
		} catch (err) {
			throw new Error(`MONGO_URI: connecting to MongoDB at ${mongoHosts(this.uri)} failed: ${(cause ?? (err as Error)).message}`, { cause: err });
		} finally {
			mongoose.connection.off("error", noteCause);
		}
		sharedMongoConnection.acquire();
		// readyState 1: connected; mongoose reconnects by itself after a loss, meanwhile the node is not ready.
		watchMongoConnection(() => mongoose.connection.readyState === 1);
		this.connected = true;
		this.model = this.adapter.model;
		// Unique indexes must exist before the first write relies on them.
		await this.model.createIndexes();
	}
	async compact() {
		// MongoDB updates documents in place and reclaims the space of old versions itself.
	}

	async disconnect() {
		if (!this.connected) return;
		this.connected = false;
		const adapter = this.adapter;
		await sharedMongoConnection.release(() => adapter.disconnect()).catch(() => undefined);
	}
	async insert(docs: Query[]) {
		const res = await this.model.insertMany(docs, { ordered: true });
		return res.map((d: any) => d.toObject());
	}
	find(query: Query, opts: FindOptions) {
		let q = this.model.find(query, opts.fields ? opts.fields.map((f) => (f === "id" ? "_id" : f)).join(" ") : undefined);
		if (opts.sort) q = q.sort(toStored(opts.sort) as any);
		if (opts.offset) q = q.skip(opts.offset);
		if (opts.limit) q = q.limit(opts.limit);
		return q.lean().exec() as Promise<any[]>;
	}
	count(query: Query) {
		return this.model.countDocuments(query).exec();
	}
	updateOne(query: Query, update: Query, upsert: boolean) {
		return this.model.findOneAndUpdate(query, update, { new: true, upsert, lean: true }).exec();
	}
	async updateMany(query: Query, update: Query) {
		const res = await this.model.updateMany(query, update).exec();
		return res.modifiedCount;
	}
	async remove(query: Query, multi: boolean) {
		const res = multi ? await this.model.deleteMany(query).exec() : await this.model.deleteOne(query).exec();
		return res.deletedCount;
	}
}

/** The collection loads the process is waiting for, so background loads can start after them. */
const startupLoads = {
	pending: 0,
	waiters: [] as Array<() => void>,
	track(load: Promise<void>): Promise<void> {
		this.pending++;
		const done = () => {
			if (--this.pending > 0) return;
			const waiters = this.waiters.splice(0);
			setImmediate(() => waiters.forEach((w) => w()));
		};
		load.then(done, done);
		return load;
	},
	idle(): Promise<void> {
		return new Promise((resolve) => (this.pending === 0 ? setImmediate(resolve) : this.waiters.push(resolve)));
	},
};

/**
 * What a failed background load does: the process exits, as it refuses to start when a foreground
 * load fails. Serving on would answer every action that needs the collection with an error while
 * looking healthy (a checkout charging and refunding on each try). Tests replace `handle`.
 */
export const backgroundLoadFailure = {
	handle(collection: string, err: Error): void {
		opsLog.error(`Collection ${collection} could not be loaded, and the shop cannot run without it: exiting. ${err.message}`);
		process.exit(1);
	},
};

export interface CollectionOptions {
	mongoUri?: string;
	/** Directory for NeDB files; undefined means in memory. */
	dataDir?: string;
}

export class Collection<T extends Entity = Entity> {
	readonly backend: Backend;
	readonly kind: "nedb" | "mongo";

	constructor(readonly name: string, readonly spec: CollectionSpec, opts: CollectionOptions) {
		if (opts.mongoUri) {
			this.kind = "mongo";
			this.backend = new MongoBackend(name, spec, opts.mongoUri);
		} else {
			this.kind = "nedb";
			this.backend = new NedbBackend(name, spec, opts.dataDir ? path.join(opts.dataDir, `${name}.db`) : undefined);
		}
	}

	/** Settles when the backend is connected (and, on NeDB, the file loaded); operations wait for it. */
	private ready: Promise<void> = Promise.resolve();

	connect(): Promise<void> {
		try {
			this.backend.open();
		} catch (err) {
			return Promise.reject(err);
		}
		if (!this.spec.loadInBackground) return (this.ready = startupLoads.track(this.backend.connect()));
		// After what the start-up waits for: loading alongside it would only slow it down.
		this.ready = startupLoads.idle()
			.then(() => this.backend.connect())
			.catch((err) => {
				backgroundLoadFailure.handle(this.name, err);
				throw new StoreUnavailableError(`The ${this.name} store could not be loaded: ${err.message}`, { collection: this.name });
			});
		// Operations report the failure themselves.
		this.ready.catch(() => undefined);
		return Promise.resolve();
	}
	async disconnect() {
		await this.ready.catch(() => undefined);
		return this.backend.disconnect();
	}

	/** Inserts one document; a unique-index violation becomes a 409 ConflictError. */
	async insert(doc: Omit<T, "id"> & { id?: string }): Promise<T> {
		const [saved] = await this.insertMany([doc]);
		return saved;
	}

	async insertMany(docs: Array<Omit<T, "id"> & { id?: string }>): Promise<T[]> {
		try {
			const stored = docs.map((d) => {
				const { id, ...rest } = d as any;
				return { _id: id ?? newId(), ...rest };
			});
			await this.ready;
			const res = await this.backend.insert(stored);
			return res.map((d) => toEntity<T>(d)!);
		} catch (err) {
			if (isDuplicateKey(err)) throw duplicateError(this.name, this.spec, err);
			throw err;
		}
	}

	async findById(id: string): Promise<T | null> {
		if (typeof id !== "string") return null;
		return this.findOne({ id });
	}

	async findOne(query: Query, opts: Omit<FindOptions, "limit"> = {}): Promise<T | null> {
		await this.ready;
		const [doc] = await this.backend.find(toStored(query), { ...opts, limit: 1 });
		return toEntity<T>(doc);
	}

	async find(query: Query = {}, opts: FindOptions = {}): Promise<T[]> {
		await this.ready;
		const docs = await this.backend.find(toStored(query), opts);
		return docs.map((d) => toEntity<T>(d)!);
	}

	/** One page of matches and the total count, for list responses. */
	findWithCount(query: Query, opts: FindOptions): Promise<[T[], number]> {
		return Promise.all([this.find(query, opts), this.count(query)]);
	}

	async count(query: Query = {}): Promise<number> {
		await this.ready;
		return this.backend.count(toStored(query));
	}

	/**
	 * Atomically updates the first document matching `query` and returns it as updated, or null
	 * when none matched: the building block of conditional updates (`stock >= qty`, state CAS).
	 */
	async updateOne(query: Query, update: Query, opts: { upsert?: boolean } = {}): Promise<T | null> {
		try {
			await this.ready;
			return toEntity<T>(await this.backend.updateOne(toStored(query), update, !!opts.upsert));
		} catch (err) {
			if (isDuplicateKey(err)) throw duplicateError(this.name, this.spec, err);
			throw err;
		}
	}

	updateById(id: string, update: Query): Promise<T | null> {
		return this.updateOne({ id }, update);
	}

	async updateMany(query: Query, update: Query): Promise<number> {
		try {
			await this.ready;
			return await this.backend.updateMany(toStored(query), update);
		} catch (err) {
			if (isDuplicateKey(err)) throw duplicateError(this.name, this.spec, err);
			throw err;
		}
	}

	async removeOne(query: Query): Promise<number> {
		await this.ready;
		return this.backend.remove(toStored(query), false);
	}

	async removeMany(query: Query): Promise<number> {
		await this.ready;
		return this.backend.remove(toStored(query), true);
	}

	/**
	 * Rewrites the embedded file at once, leaving out every removed document and overwritten version:
	 * after an account's erasure nothing of it may be read back from the file. (The file is otherwise
	 * rewritten only once it has grown past its live size.)
	 */
	async compact(): Promise<void> {
		await this.ready;
		await this.backend.compact();
	}
}
