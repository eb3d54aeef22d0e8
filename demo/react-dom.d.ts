// The one react-dom entry the demo uses (react-dom ships no types, and @types/react-dom is not
// worth a dependency for one function).
declare module "react-dom/client" {
  import type { ReactNode } from "react";
  export function createRoot(container: Element): { render(children: ReactNode): void; unmount(): void };
}
