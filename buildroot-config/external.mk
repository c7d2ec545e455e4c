include $(sort $(wildcard $(BR2_EXTERNAL_LINEBOX_PATH)/package/*/*.mk))
