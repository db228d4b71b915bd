-- Loads nginx/lua modules from the repo under busted, outside nginx.
package.path = "nginx/lua/?.lua;" .. package.path
