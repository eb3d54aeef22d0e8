// The app's entry: StrictMode, as apps created by Vite have it, and one chat room.
import React, { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { ChatRoom } from "./ChatRoom.jsx";

const { ROOM_ID = "general", USER_ID = "me" } = globalThis.__ENV__ ?? {};
createRoot(document.getElementById("root")).render(
  <StrictMode>
    <ChatRoom roomId={ROOM_ID} currentUser={{ id: USER_ID }} />
  </StrictMode>,
);
