import { buildCategoryTree, descendantIds, ancestorPath, wouldCreateCycle, type CategoryNode } from "../../lib/category-tree";

const cat = (id: string, parentId: string | null = null, position = 0): CategoryNode => ({ id, name: id.toUpperCase(), slug: id, parentId, position });
// clothing ─┬─ shirts ── tees
//           └─ jeans
// home
const categories = [cat("tees", "shirts"), cat("clothing"), cat("shirts", "clothing", 0), cat("jeans", "clothing", 1), cat("home", null, 1)];

describe("buildCategoryTree", () => {
	test("nests children under parents, ordered by position then name", () => {
		const tree = buildCategoryTree(categories);
		expect(tree.map((c) => c.id)).toEqual(["clothing", "home"]);
		expect(tree[0].children.map((c) => c.id)).toEqual(["shirts", "jeans"]);
		expect(tree[0].children[0].children).toEqual([expect.objectContaining({ id: "tees", children: [] })]);
	});

	test("a category whose parent is missing shows as a root", () => {
		expect(buildCategoryTree([cat("orphan", "gone")]).map((c) => c.id)).toEqual(["orphan"]);
	});

	test("an empty catalog has an empty tree", () => {
		expect(buildCategoryTree([])).toEqual([]);
	});
});

describe("descendantIds", () => {
	test.each([
		["clothing", ["clothing", "shirts", "jeans", "tees"]],
		["shirts", ["shirts", "tees"]],
		["tees", ["tees"]],
		["home", ["home"]],
	])("%s → %j", (root, ids) => expect(descendantIds(categories, root).sort()).toEqual([...ids].sort()));

	test("a corrupted cyclic tree does not loop forever", () => {
		expect(descendantIds([cat("a", "b"), cat("b", "a")], "a").sort()).toEqual(["a", "b"]);
	});
});

describe("ancestorPath", () => {
	test.each([
		["tees", ["clothing", "shirts", "tees"]],
		["clothing", ["clothing"]],
		["unknown", []],
		[null, []],
	])("%s → %j", (id, path) => expect(ancestorPath(categories, id).map((c) => c.id)).toEqual(path));

	test("accepts a map by id", () => {
		expect(ancestorPath(new Map(categories.map((c) => [c.id, c])), "jeans").map((c) => c.slug)).toEqual(["clothing", "jeans"]);
	});
});

describe("wouldCreateCycle", () => {
	test.each([
		["clothing", "tees", true],
		["clothing", "clothing", true],
		["shirts", "tees", true],
		["tees", "jeans", false],
		["shirts", "home", false],
		["home", null, false],
	])("moving %s under %s: %s", (id, parent, cycle) => expect(wouldCreateCycle(categories, id, parent)).toBe(cycle));
});
