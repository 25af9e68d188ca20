import { z } from 'zod';
import { USER_NAME } from './accounts.js';
import { boundedName } from '../http/schemas.js';

/** The request shapes of accounts: logins, users, passwords and project members. */

export const userNameSchema = z.string().regex(USER_NAME, 'must be 1-64 letters, digits, . _ @ - (starting with a letter or digit)');
/** New passwords: long enough to resist guessing; scrypt takes any length, the limit only bounds the work. */
export const newPasswordSchema = z.string().min(8, 'must be at least 8 characters').max(1024);
export const loginSchema = z.strictObject({ user: boundedName(64), password: z.string().min(1).max(1024) });
export const addUserSchema = z.strictObject({ name: userNameSchema, password: newPasswordSchema, superuser: z.boolean().optional() });
export const setPasswordSchema = z.strictObject({ password: newPasswordSchema });
export const changeOwnPasswordSchema = z.strictObject({ current: z.string().min(1).max(1024), password: newPasswordSchema });
export const grantSchema = z.strictObject({ user: userNameSchema });
export const memberParams = z.strictObject({ project: boundedName(64), user: boundedName(64) });
