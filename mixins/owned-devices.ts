/**
 * What browsers' push subscriptions and apps' devices share: each is unique by what the device gave
 * (an endpoint, a token), belongs to the account signed in on it last, and an account keeps its
 * newest few. Used by mixins/push-subscriptions.mixin.ts and mixins/push-devices.mixin.ts.
 */
import type { Collection, Entity } from "./collection";
import { NotFoundError, isDuplicate } from "../lib/errors";
import { pageWindow, toPage } from "../lib/pagination";

/**
 * Stores the device under its unique `key` as `userId`'s (the same device again, or another account
 * signed in on it: one record, now this account's), then retires the account's devices past its
 * newest `keep`. `created` tells a new record from an updated one (201 or 200).
 */
export async function keepOwnedDevice(devices: Collection, key: Record<string, string>, fields: Record<string, unknown> & { userId: string; updatedAt: Date }, keep: number): Promise<{ saved: Entity; created: boolean }> {
	let saved = await devices.updateOne(key, { $set: fields });
	let created = false;
	if (!saved) {
		try {
			saved = await devices.insert({ ...key, ...fields, createdAt: fields.updatedAt });
			created = true;
		} catch (err) {
			// Stored by a concurrent request between our update and insert: update that one.
			if (!isDuplicate(err)) throw err;
			saved = await devices.updateOne(key, { $set: fields });
			if (!saved) throw err;
		}
	}
	const older = await devices.find({ userId: fields.userId }, { sort: { updatedAt: -1 }, offset: keep, fields: ["id"] });
	for (const old of older) await devices.removeOne({ id: old.id, userId: fields.userId });
	return { saved, created };
}

/** A page of the account's devices, newest first, as `view` shows them. */
export async function pageOfOwnedDevices<T>(devices: Collection, userId: string, page: number | undefined, pageSize: number | undefined, view: (d: Entity) => T) {
	const w = pageWindow(page, pageSize);
	const [rows, total] = await devices.findWithCount({ userId }, { sort: { updatedAt: -1 }, offset: w.offset, limit: w.limit });
	return toPage(rows.map(view), total, w.page, w.pageSize);
}

/** Removes the account's device; another account's, or none, is a 404 naming `what`. */
export async function removeOwnedDevice(devices: Collection, id: string, userId: string, what: string): Promise<void> {
	if (!(await devices.removeOne({ id, userId }))) throw new NotFoundError(what);
}
