/* jsonschema: a documented subset of JSON Schema compiled to a byte-level
 * constraint (constrain.h), for `yuanft generate --json-schema` and the
 * server's response_format. Every text the constraint lets through is the
 * canonical JSON (Python's json.dumps(value, ensure_ascii=False): separators
 * ", " and ": ", no other whitespace) of a value valid against the schema.
 *
 * The subset (docs/constrained-decoding.md):
 *   {"type": "object", "properties": {"k": S, ...}, "required": ["k", ...],
 *    "additionalProperties": false}
 *        properties written in the schema's order, each at most once, the
 *        required ones always; no property outside "properties" is ever
 *        written (additionalProperties may be false, true or absent)
 *   {"type": "array", "items": S, "minItems": n, "maxItems": n}
 *   {"type": "string", "enum": ["a", ...]}  or  {"enum": ["a", ...]}
 *   {"type": "string", "minLength": n, "maxLength": n}   (code points)
 *   {"type": "integer"}  {"type": "number"}  {"type": "boolean"}  {"type": "null"}
 * Annotations are ignored: title, description, $schema, $id, $comment,
 * default, examples. Any other keyword, a list of types, a non-string enum
 * value, "required" naming a property not listed, minimum above maximum,
 * more than 64 properties or enum values, or nesting deeper than 16 is an
 * error naming the keyword and where in the schema it is. */
#ifndef YF_JSONSCHEMA_H
#define YF_JSONSCHEMA_H

#include "task/constrain.h"

/* Compiles text[0..len) (a JSON Schema). name: how errors call it (the file). */
int yf_constraint_json_schema(const char *text, size_t len, const char *name, yf_constraint **out);

#endif
