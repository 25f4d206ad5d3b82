/**
 * Idempotency keys: what counts as "the same request", claiming a key before doing anything, and
 * waiting for the request that holds it. Storage is injected (a collection with a unique index on
 * {userId, key}), so the rules are tested without a broker.
 */
import { BadRequestError, isDuplicate } from "./errors";
import crypto from "node:crypto";
import { Errors } from "moleculer";

/** JSON with object keys sorted at every level, so key order never changes the fingerprint. */
export function canonicalJson(value: unknown): string {
	if (value === null || typeof value !== "object") return JSON.stringify(value) ?? "null";
	if (value instanceof Date) return JSON.stringify(value.toISOString());
	if (Array.isArray(value)) return `[${value.map((v) => (v === undefined ? "null" : canonicalJson(v))).join(",")}]`;
	const entries = Object.keys(value as Record<string, unknown>)
		.filter((k) => (value as Record<string, unknown>)[k] !== undefined)
		.sort()
		.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
	return `{${entries.join(",")}}`;
}

/** SHA-256 (hex) of the canonical JSON of a request body. */
export function requestFingerprint(body: unknown): string {
	return crypto.createHash("sha256").update(canonicalJson(body)).digest("hex");
}

export const MAX_IDEMPOTENCY_KEY_LENGTH = 255;

/** A usable key: 1..255 visible ASCII characters. */
export function isValidIdempotencyKey(key: unknown): key is string {
	return typeof key === "string" && key.length > 0 && key.length <= MAX_IDEMPOTENCY_KEY_LENGTH && /^[\x21-\x7e]+$/.test(key);
}

/** The 400 for a key that is not usable (isValidIdempotencyKey). */
export const invalidIdempotencyKey = () => new BadRequestError(`Idempotency-Key must be 1 to ${MAX_IDEMPOTENCY_KEY_LENGTH} visible ASCII characters`, "IDEMPOTENCY_KEY_INVALID");

/** The longest refund key payments takes; its provider key (`refund-<key>`) stays within Stripe's 255. */
export const MAX_REFUND_KEY_LENGTH = 200;

/**
 * The refund key of an admin's refund of `orderId` sent with `clientKey`: the same key refunds once.
 * Keys as they were when they fit (refunds made before keep matching their retries); a longer one by
 * its SHA-256, so any valid Idempotency-Key fits.
 */
export function adminRefundKey(orderId: string, clientKey: string): string {
	const plain = `${orderId}-admin-${clientKey}`;
	if (plain.length <= MAX_REFUND_KEY_LENGTH) return plain;
	return `${orderId}-admin-sha256-${crypto.createHash("sha256").update(clientKey).digest("base64url")}`;
}

/** A refusal as stored with its key, so a replay answers exactly the same. */
export interface StoredError {
	name: string;
	message: string;
	code: number;
	type: string;
	data: unknown;
}

export function serializeError(err: any): StoredError {
	return { name: err.name, message: err.message, code: err.code, type: err.type, data: err.data ?? null };
}

export function replayError(e: StoredError): Error {
	const err = new Errors.MoleculerClientError(e.message, e.code, e.type, e.data ?? undefined);
	err.name = e.name;
	return err;
}

export interface IdempotencyRecord {
	id: string;
	userId: string;
	key: string;
	fingerprint: string;
	/** Chosen when the key is claimed, so every retry of the request works on the same order. */
	orderId: string;
	status: "running" | "completed" | "failed";
	response?: unknown;
	error?: StoredError;
	createdAt: Date;
	/** The node run whose request holds the key (absent on keys claimed before it was recorded). */
	holder?: { nodeID: string; instanceID: string };
}

export interface IdempotencyStore {
	/** Throws an error of type "DUPLICATE" when {userId, key} is taken. */
	insert(doc: Omit<IdempotencyRecord, "id">): Promise<IdempotencyRecord>;
	findOne(query: { userId: string; key: string }): Promise<IdempotencyRecord | null>;
	findById(id: string): Promise<IdempotencyRecord | null>;
}

export type KeyClaim = { claimed: true; record: IdempotencyRecord } | { claimed: false; record: IdempotencyRecord };

/**
 * Takes the key for this request (the unique index makes exactly one concurrent request win), or
 * returns the record of the request that holds it. Null after repeated races with expiry.
 */
export async function claimIdempotencyKey(
	store: IdempotencyStore,
	input: { userId: string; key: string; fingerprint: string; orderId: () => string; holder?: IdempotencyRecord["holder"] },
): Promise<KeyClaim | null> {
	const { userId, key, fingerprint, holder } = input;
	for (let attempt = 0; attempt < 3; attempt++) {
		try {
			return { claimed: true, record: await store.insert({ userId, key, fingerprint, orderId: input.orderId(), status: "running", createdAt: new Date(), ...(holder ? { holder } : {}) }) };
		} catch (err) {
			if (!isDuplicate(err)) throw err;
		}
		const record = await store.findOne({ userId, key });
		if (record) return { claimed: false, record };
		// Expired or freed between the insert and the read: claim it again.
	}
	return null;
}

/** Polls a running record until its request finishes or `waitMs` passes; null when it was freed. */
export async function awaitIdempotentOutcome(store: IdempotencyStore, record: IdempotencyRecord, waitMs: number, pollMs = 25): Promise<IdempotencyRecord | null> {
	const deadline = Date.now() + waitMs;
	let current: IdempotencyRecord | null = record;
	while (current?.status === "running" && Date.now() < deadline) {
		await new Promise((r) => setTimeout(r, pollMs));
		current = await store.findById(current.id);
	}
	return current;
}

/** What becomes of a key still "running" when a retry finds it: see orphanedKeyAction. */
export type OrphanedKeyAction = "wait" | "complete" | "release";

/**
 * A key is "running" while its request works; a request that died with its process leaves it so.
 * Its order tells how far the request got: a finished checkout completes the key with the order at
 * once (its answer is the order); an undone one, or none at all, frees the key for a retry once the
 * key is older than `staleMs` (younger, the request may still be on its way), or at once when the run
 * that held it is known to be over (`holderOver`: its node came back as a new run); a checkout still
 * running or owing compensation is waited for (recovery finishes it and answers the key).
 */
export function orphanedKeyAction(record: Pick<IdempotencyRecord, "createdAt">, sagaState: string | null, now: Date, staleMs: number, holderOver = false): OrphanedKeyAction {
	if (sagaState === "completed") return "complete";
	if (sagaState === "running" || sagaState === "compensation_failed") return "wait";
	return holderOver || now.getTime() - new Date(record.createdAt).getTime() >= staleMs ? "release" : "wait";
}
