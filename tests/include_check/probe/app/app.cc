#include "api/api.h"
#include "base/base.h"

int App() { return Api() + Base(); }
