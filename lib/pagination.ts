/** The list shape of API.md (moleculer-db's): rows, total, page, pageSize, totalPages. */
export interface Page<T> {
	rows: T[];
	total: number;
	page: number;
	pageSize: number;
	totalPages: number;
}

export const MAX_PAGE_SIZE = 100;
export const DEFAULT_PAGE_SIZE = 20;
/** Far beyond any list's last page; `?page=1e30` is a mistake, answered 422 rather than echoed back. */
export const MAX_PAGE = 1_000_000;

/** fastest-validator fragment every list action spreads into its params. */
export const pageParams = {
	page: { type: "number", integer: true, min: 1, max: MAX_PAGE, optional: true, convert: true },
	pageSize: { type: "number", integer: true, min: 1, max: MAX_PAGE_SIZE, optional: true, convert: true },
} as const;

export function pageWindow(page = 1, pageSize = DEFAULT_PAGE_SIZE): { offset: number; limit: number; page: number; pageSize: number } {
	const size = Math.min(Math.max(1, Math.floor(pageSize)), MAX_PAGE_SIZE);
	const p = Math.min(Math.max(1, Math.floor(page)), MAX_PAGE);
	return { offset: (p - 1) * size, limit: size, page: p, pageSize: size };
}

export function toPage<T>(rows: T[], total: number, page: number, pageSize: number): Page<T> {
	return { rows, total, page, pageSize, totalPages: Math.ceil(total / pageSize) };
}
