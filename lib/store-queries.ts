/**
 * Query conditions shared by the stores (NeDB and MongoDB read them alike).
 *
 * A stored field that is "not set" may be missing (a document from before the field) or null (cleared):
 * NeDB matches `{field: null}` only when the field holds null, so both are asked for.
 */
export function absentOr(field: string, otherwise?: Record<string, unknown>): { $or: Array<Record<string, unknown>> } {
	return { $or: [{ [field]: { $exists: false } }, { [field]: null }, ...(otherwise ? [{ [field]: otherwise }] : [])] };
}
