import { z } from 'zod';
import { flagQuery } from '../http/schemas.js';

/** The request shapes of files: content addresses, file references and project import. */

/** Names are checked as paths by the core (INVALID_PATH); here only their size. */
export const filePath = z.string().min(1).max(1024);
export const sha256Schema = z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits');
export const fileRefSchema = z.strictObject({ name: filePath, sha256: sha256Schema, size: z.int().min(0).max(Number.MAX_SAFE_INTEGER) });
export const importQuery = z.strictObject({ newIds: flagQuery });

