// Vitest setup: testing-library's findBy* wait 1 s by default, which a role query over a large page
// in jsdom can use up on a loaded CI machine (a dialog query failed at 1137 ms in CI once). Wait up
// to 5 s; the tests' own timeout is raised to stay above it.
import {configure} from '@testing-library/react';

configure({asyncUtilTimeout: 5000});
