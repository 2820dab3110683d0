// The `{{name}}` plugin.
//
// `validate` rejects an event without a `programId` attribute. `transform` looks the
// program up in core data: a store error asks for a retry, an unknown program drops the
// event, a known one gets its `programName` and a `label` (config key `label`, default
// `checked`) appended to the attributes.
//
// WIT in JavaScript: an export returning `result<T, plugin-error>` returns T or throws
// `{ tag: 'reject' | 'retry' | 'fail', val: reason }`; an import returning `result` returns
// the ok value or throws an error whose `payload` is the err value; `option<T>` is T or
// undefined; attributes are an array of `[name, value]`.

import { get as configGet } from 'adtrack:plugin/config@0.1.2';
import { lookup } from 'adtrack:plugin/core-data@0.1.2';

export const handler = {
  validate(event) {
    programId(event);
  },

  transform(event) {
    const id = programId(event);
    let record;
    try {
      record = lookup(id);
    } catch (error) {
      throw { tag: 'retry', val: `core data unavailable: ${error.payload ?? error}` };
    }
    if (record === undefined) {
      return [];
    }
    const name = record.find(([field]) => field === 'programName');
    if (name !== undefined) {
      event.attributes.push(['programName', name[1]]);
    }
    event.attributes.push(['label', configGet('label') ?? 'checked']);
    return [event];
  },
};

// The event's `programId`, or a rejection.
function programId(event) {
  const found = event.attributes.find(([name]) => name === 'programId');
  if (found === undefined) {
    throw { tag: 'reject', val: 'missing programId' };
  }
  return found[1];
}
